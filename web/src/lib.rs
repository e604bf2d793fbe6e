//! Browser bindings of the SANA-Video engine. The demo page (prompt in, video out over
//! WebGPU) is a later issue; today this crate proves the core library builds for
//! wasm32 and exposes the checks a page needs before fetching weights.

use sana_video_core::models::dit::DitConfig;

/// Validates a `transformer/config.json` text and summarises it (JSON), or returns the
/// same error message the CLI would print.
pub fn describe_transformer_config(json: &str) -> Result<String, String> {
    let c = DitConfig::from_json(json, "transformer/config.json").map_err(|e| e.to_string())?;
    Ok(serde_json::json!({
        "class": c.class_name,
        "layers": c.layers,
        "width": c.dim,
        "heads": c.heads,
        "patch_size": c.patch_size,
        "in_channels": c.in_channels,
        "parameters": c.parameter_count(),
    })
    .to_string())
}

#[cfg(target_arch = "wasm32")]
mod bindings {
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen(js_name = describeTransformerConfig)]
    pub fn describe_transformer_config(json: &str) -> Result<String, JsValue> {
        super::describe_transformer_config(json).map_err(|e| JsValue::from_str(&e))
    }

    #[wasm_bindgen(js_name = engineVersion)]
    pub fn engine_version() -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn refuses_unknown_class() {
        let err = super::describe_transformer_config(r#"{"_class_name": "FluxTransformer2DModel"}"#).unwrap_err();
        assert!(err.contains("FluxTransformer2DModel"), "{err}");
    }
}
