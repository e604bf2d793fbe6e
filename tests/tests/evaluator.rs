//! The motion evaluator (core/src/eval) on clips rendered by the dataset generator
//! (tools/dataset/motion_dataset.py, tests/fixtures/eval): with their own captions it must
//! find the objects and their motions; with another clip's caption it must not.

use sana_video_core::eval::{parse_prompt, score_clip, vocabulary, Clip, Summary};
use sana_video_tests::fixtures;

fn load(name: &str) -> (Vec<Vec<f32>>, [usize; 3], Vec<String>) {
    let dir = fixtures().join("eval").join(name);
    let bytes = std::fs::read(dir.join("clips.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let v = st.tensor("videos").unwrap();
    let s = v.shape().to_vec();
    let per = s[1] * s[2] * s[3] * 3;
    let clips = v.data().chunks_exact(per).map(|c| c.iter().map(|&b| b as f32).collect()).collect();
    let captions = std::fs::read_to_string(dir.join("captions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["caption"].as_str().unwrap().to_string())
        .collect();
    (clips, [s[1], s[2], s[3]], captions)
}

fn summarise(clips: &[Vec<f32>], dims: [usize; 3], captions: &[String], shift: usize) -> Summary {
    let mut sum = Summary::default();
    for (i, c) in clips.iter().enumerate() {
        let clip = Clip { data: c, frames: dims[0], height: dims[1], width: dims[2] };
        sum.add(&score_clip(&clip, &captions[(i + shift) % captions.len()]).unwrap());
    }
    sum
}

#[test]
fn prompts_parse() {
    let e = parse_prompt("On a dark blue background, a small red circle moves slowly to the left").unwrap();
    assert_eq!(e.objects.len(), 1);
    let o = &e.objects[0];
    assert_eq!((o.size.as_str(), o.colour.as_str(), o.shape.as_str(), o.motion.as_str(), o.speed.as_str()), ("small", "red", "circle", "left", "slowly"));
    assert_eq!(e.background, vec!["dark blue".to_string()]);
    let e = parse_prompt("two objects: a large green square rises quickly, and a medium pink star circles slowly, on a vertical gradient from beige to navy").unwrap();
    assert_eq!(e.objects.iter().map(|o| o.motion.as_str()).collect::<Vec<_>>(), ["up", "circle"]);
    assert_eq!(e.background.len(), 2);
    assert!(parse_prompt("a cat sleeping on a sofa").is_err());
    assert!(!vocabulary().held_out.is_empty());
}

#[test]
fn rendered_clips_score_high_with_their_captions_and_low_with_others() {
    for name in ["eval_clips", "train_clips"] {
        let (clips, dims, captions) = load(name);
        let own = summarise(&clips, dims, &captions, 0);
        let other = summarise(&clips, dims, &captions, 1);
        println!(
            "{name}: own captions: colour {:.3}, motion {:.3}, consistency {:.3} ({} objects); shifted captions: colour {:.3}, motion {:.3}",
            own.colour_accuracy(),
            own.motion_accuracy(),
            own.consistency(),
            own.objects,
            other.colour_accuracy(),
            other.motion_accuracy()
        );
        assert!(own.colour_accuracy() >= 0.95, "{name}: colour accuracy {:.3}", own.colour_accuracy());
        assert!(own.motion_accuracy() >= 0.85, "{name}: motion accuracy {:.3}", own.motion_accuracy());
        assert!(other.colour_accuracy() <= 0.6, "{name}: wrong captions still find colours {:.3}", other.colour_accuracy());
        assert!(
            other.colour_accuracy() * other.motion_accuracy() <= 0.5 * own.colour_accuracy() * own.motion_accuracy(),
            "{name}: wrong captions score too well"
        );
    }
}
