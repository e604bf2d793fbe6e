//! The built-in model's quality evaluator (no model involved): reads what a prompt of the
//! motion dataset asks for (`tools/dataset/vocabulary.json`, compiled in, the same words
//! and colours the dataset renders), finds each named object in the frames by its colour,
//! tracks it, and scores colour (is it there), motion (does it move as asked) and
//! frame-to-frame consistency.
//!
//! Per object: a pixel belongs to it when its RGB lies within `COLOUR_RADIUS` of the
//! object's colour and is nearer to it than to any other object colour and to the
//! prompt's background colours. The object is *found* when its mask covers at least
//! `MIN_AREA_FRACTION` of its nominal area in 3/4 of the frames. Motion is judged on the
//! mask centroid and area: straight motions by the direction of the displacement between
//! the first and last quarter of the clip (cosine ≥ 0.7, length ≥ 4% of the frame),
//! bounce by vertical travel without horizontal drift, circle by travel on both axes,
//! grow/shrink by the area ratio. Consistency is the mean IoU of consecutive masks.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::{Error, Result};

const VOCABULARY: &str = include_str!("../../../tools/dataset/vocabulary.json");
pub const COLOUR_RADIUS: f32 = 64.0;
pub const MIN_AREA_FRACTION: f32 = 0.15;

#[derive(Deserialize, Debug)]
pub struct Vocabulary {
    pub colours: BTreeMap<String, [u8; 3]>,
    pub backgrounds: BTreeMap<String, [u8; 3]>,
    pub shapes: Vec<String>,
    pub sizes: BTreeMap<String, f32>,
    pub speeds: BTreeMap<String, f32>,
    pub motions: BTreeMap<String, Vec<String>>,
    pub held_out: Vec<[String; 3]>,
}

pub fn vocabulary() -> &'static Vocabulary {
    static V: OnceLock<Vocabulary> = OnceLock::new();
    V.get_or_init(|| serde_json::from_str(VOCABULARY).expect("tools/dataset/vocabulary.json is valid (checked by tests)"))
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExpectedObject {
    pub size: String,
    pub colour: String,
    pub shape: String,
    pub motion: String,
    pub speed: String,
}

/// What a prompt asks for: its objects in order and the background colours it names.
#[derive(Clone, Debug, PartialEq)]
pub struct Expectation {
    pub objects: Vec<ExpectedObject>,
    pub background: Vec<String>,
}

/// Parses a prompt written with the dataset's templates ("a small red circle moves slowly
/// to the left on a dark blue background"). Refuses prompts naming no known object.
pub fn parse_prompt(prompt: &str) -> Result<Expectation> {
    let v = vocabulary();
    let text = prompt.to_lowercase();
    let mut found: Vec<(usize, ExpectedObject)> = Vec::new();
    for size in v.sizes.keys() {
        for colour in v.colours.keys() {
            for shape in &v.shapes {
                let head = format!("a {size} {colour} {shape} ");
                let mut from = 0;
                while let Some(i) = text[from..].find(&head) {
                    let at = from + i;
                    let rest = &text[at + head.len()..];
                    let mut best: Option<(usize, String, String)> = None;
                    for (motion, phrases) in &v.motions {
                        for p in phrases {
                            for speed in v.speeds.keys() {
                                let phrase = p.replace("{speed}", speed);
                                if rest.starts_with(&phrase) && best.as_ref().is_none_or(|b| phrase.len() > b.0) {
                                    best = Some((phrase.len(), motion.clone(), speed.clone()));
                                }
                            }
                        }
                    }
                    if let Some((_, motion, speed)) = best {
                        found.push((at, ExpectedObject { size: size.clone(), colour: colour.clone(), shape: shape.clone(), motion, speed }));
                    }
                    from = at + head.len();
                }
            }
        }
    }
    if found.is_empty() {
        return Err(Error::Input(format!("prompt names no object of the motion dataset's vocabulary: {prompt:?}")));
    }
    found.sort_by_key(|(at, _)| *at);
    let mut background = Vec::new();
    // Longest names first so "dark blue" is not also read as "blue".
    let mut names: Vec<&String> = v.backgrounds.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut rest = text.clone();
    for n in names {
        for pat in [format!("{n} background"), format!("from {n} to"), format!(" to {n}")] {
            if rest.contains(&pat) && !background.contains(n) {
                background.push(n.clone());
                // Blank the name only, so "grey" is not read again inside "light grey" and
                // "from beige to navy" still shows " to navy".
                rest = rest.replace(&pat, &pat.replace(n.as_str(), "#"));
            }
        }
    }
    Ok(Expectation { objects: found.into_iter().map(|(_, o)| o).collect(), background })
}

/// A clip: `frames` RGB values in [0, 255], `[T, H, W, 3]`.
pub struct Clip<'a> {
    pub data: &'a [f32],
    pub frames: usize,
    pub height: usize,
    pub width: usize,
}

/// One object's track: per frame mask area (pixels) and centroid (x, y) in pixels.
#[derive(Clone, Debug)]
pub struct Track {
    pub area: Vec<usize>,
    pub centroid: Vec<Option<(f32, f32)>>,
    pub masks: Vec<Vec<bool>>,
}

fn dist(p: &[f32], c: [u8; 3]) -> f32 {
    let d = [p[0] - c[0] as f32, p[1] - c[1] as f32, p[2] - c[2] as f32];
    (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
}

/// Tracks the pixels of `colour` against the other object colours and `background`.
pub fn track(clip: &Clip, colour: &str, background: &[String]) -> Result<Track> {
    let v = vocabulary();
    let target = *v.colours.get(colour).ok_or_else(|| Error::Input(format!("unknown colour {colour:?}")))?;
    let rivals: Vec<[u8; 3]> = v
        .colours
        .iter()
        .filter(|(k, _)| k.as_str() != colour)
        .map(|(_, c)| *c)
        .chain(background.iter().filter_map(|b| v.backgrounds.get(b).copied()))
        .collect();
    let (t, h, w) = (clip.frames, clip.height, clip.width);
    if clip.data.len() != t * h * w * 3 {
        return Err(Error::Input(format!("clip has {} values, expected [{t}, {h}, {w}, 3]", clip.data.len())));
    }
    let mut out = Track { area: Vec::new(), centroid: Vec::new(), masks: Vec::new() };
    for f in 0..t {
        let frame = &clip.data[f * h * w * 3..(f + 1) * h * w * 3];
        let mut mask = vec![false; h * w];
        let (mut n, mut sx, mut sy) = (0usize, 0f64, 0f64);
        for (i, p) in frame.chunks_exact(3).enumerate() {
            let d = dist(p, target);
            if d < COLOUR_RADIUS && rivals.iter().all(|&r| d < dist(p, r)) {
                mask[i] = true;
                n += 1;
                sx += (i % w) as f64;
                sy += (i / w) as f64;
            }
        }
        out.area.push(n);
        out.centroid.push((n > 0).then(|| ((sx / n as f64) as f32, (sy / n as f64) as f32)));
        out.masks.push(mask);
    }
    Ok(out)
}

/// The verdict on one object of one clip.
#[derive(Clone, Debug)]
pub struct ObjectScore {
    pub object: ExpectedObject,
    pub found: bool,
    /// `None` when the object was not found.
    pub motion_ok: Option<bool>,
    pub consistency: f32,
}

fn mean_xy(points: &[(f32, f32)]) -> (f32, f32) {
    let n = points.len().max(1) as f32;
    (points.iter().map(|p| p.0).sum::<f32>() / n, points.iter().map(|p| p.1).sum::<f32>() / n)
}

/// Scores every object a prompt names in a clip.
pub fn score_clip(clip: &Clip, prompt: &str) -> Result<Vec<ObjectScore>> {
    let v = vocabulary();
    let exp = parse_prompt(prompt)?;
    let side = clip.height.min(clip.width) as f32;
    let mut scores = Vec::new();
    for o in &exp.objects {
        let tr = track(clip, &o.colour, &exp.background)?;
        let r = v.sizes.get(&o.size).copied().unwrap_or(0.1) * side;
        let min_area = (MIN_AREA_FRACTION * std::f32::consts::PI * r * r).max(4.0) as usize;
        let present: Vec<usize> = (0..clip.frames).filter(|&f| tr.area[f] >= min_area).collect();
        let found = present.len() * 4 >= clip.frames * 3;
        let mut ious = Vec::new();
        for f in 1..clip.frames {
            let (a, b) = (&tr.masks[f - 1], &tr.masks[f]);
            let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
            let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
            if union > 0 {
                ious.push(inter as f32 / union as f32);
            }
        }
        let consistency = if ious.is_empty() { 0.0 } else { ious.iter().sum::<f32>() / ious.len() as f32 };
        let motion_ok = found.then(|| {
            let pts: Vec<(f32, f32)> = present.iter().filter_map(|&f| tr.centroid[f]).collect();
            let q = (pts.len() / 4).max(1);
            let (a, b) = (mean_xy(&pts[..q]), mean_xy(&pts[pts.len() - q..]));
            let (dx, dy) = (b.0 - a.0, b.1 - a.1);
            let xr = pts.iter().map(|p| p.0).fold(f32::MIN, f32::max) - pts.iter().map(|p| p.0).fold(f32::MAX, f32::min);
            let yr = pts.iter().map(|p| p.1).fold(f32::MIN, f32::max) - pts.iter().map(|p| p.1).fold(f32::MAX, f32::min);
            let travel = 0.04 * side;
            let dir = match o.motion.as_str() {
                "left" => Some((-1.0, 0.0)),
                "right" => Some((1.0, 0.0)),
                "up" => Some((0.0, -1.0)),
                "down" => Some((0.0, 1.0)),
                "up-left" => Some((-0.707, -0.707)),
                "up-right" => Some((0.707, -0.707)),
                "down-left" => Some((-0.707, 0.707)),
                "down-right" => Some((0.707, 0.707)),
                _ => None,
            };
            match (dir, o.motion.as_str()) {
                (Some((ex, ey)), _) => {
                    let len = (dx * dx + dy * dy).sqrt();
                    len >= travel && (dx * ex + dy * ey) / len >= 0.7
                }
                (None, "bounce") => yr >= travel && xr <= 0.5 * yr,
                (None, "circle") => xr >= travel && yr >= travel,
                (None, "grow" | "shrink") => {
                    let q = (present.len() / 4).max(1);
                    let first = present[..q].iter().map(|&f| tr.area[f]).sum::<usize>() as f32;
                    let last = present[present.len() - q..].iter().map(|&f| tr.area[f]).sum::<usize>() as f32;
                    if o.motion == "grow" {
                        last >= 1.25 * first
                    } else {
                        last <= 0.8 * first
                    }
                }
                _ => false,
            }
        });
        scores.push(ObjectScore { object: o.clone(), found, motion_ok, consistency });
    }
    Ok(scores)
}

/// Totals over many clips: colour accuracy (objects found / objects asked), motion
/// accuracy (right motion / objects found), mean consistency of found objects.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub objects: usize,
    pub found: usize,
    pub motion_ok: usize,
    pub consistency_sum: f32,
}

impl Summary {
    pub fn add(&mut self, scores: &[ObjectScore]) {
        for s in scores {
            self.objects += 1;
            if s.found {
                self.found += 1;
                self.consistency_sum += s.consistency;
            }
            if s.motion_ok == Some(true) {
                self.motion_ok += 1;
            }
        }
    }
    pub fn colour_accuracy(&self) -> f32 {
        self.found as f32 / self.objects.max(1) as f32
    }
    pub fn motion_accuracy(&self) -> f32 {
        self.motion_ok as f32 / self.found.max(1) as f32
    }
    pub fn consistency(&self) -> f32 {
        self.consistency_sum / self.found.max(1) as f32
    }
}
