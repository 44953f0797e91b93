//! Pure frame comparison: luma plane → grid of cell means → changed cells against a running
//! background, with a per-cell noise estimate. No decoder, no IO.
//!
//! Per analysed frame:
//! 1. Each grid cell's mean luma is taken from every `step`-th pixel of every `step`-th row,
//!    `step` = max(2, width / 480): a cell mean does not need every pixel, and a 1080p frame
//!    is then sampled like a 480-pixel-wide one (a 32-column cell still averages ~225 pixels).
//! 2. A global light change is fitted and undone: `mean ≈ gain · background + offset` over the
//!    included cells (least squares, refitted on the cells it explains best, so a moving object
//!    does not bend it; offset only when the scene is too flat to tell a gain). Exposure steps,
//!    lamps and clouds scale bright areas more than dark ones, which an offset alone misses.
//!    `diff = (mean − offset) / gain − background`.
//! 3. A cell has changed when `|diff| > k · max(noise, median noise / 2) + floor`; `k` and
//!    `floor` fall as sensitivity rises.
//! 4. The frame has motion when at least `min_cells` included cells changed; motion is
//!    reported after `confirm_frames` such frames in a row (one noisy frame is not motion).
//! 5. The background follows each cell (fast where quiet, slowly where changed, so an object
//!    that stops becomes background); the noise estimate (mean absolute difference) follows
//!    each cell with its input clipped at twice the estimate.

use serde::{Deserialize, Serialize};

/// A rectangle excluded from detection, in fractions of the frame (0.0–1.0, origin top left).
/// A grid cell is excluded when its centre lies inside.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExclusionZone {
    /// Left edge, fraction of the width.
    pub x: f32,
    /// Top edge, fraction of the height.
    pub y: f32,
    /// Width, fraction of the frame width.
    pub width: f32,
    /// Height, fraction of the frame height.
    pub height: f32,
}

impl ExclusionZone {
    /// Whether the point (fractions of the frame) lies inside the zone.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.x && x < self.x + self.width && y >= self.y && y < self.y + self.height
    }

    /// Whether all four values are finite and the rectangle lies within the frame.
    pub fn is_valid(&self) -> bool {
        let v = [self.x, self.y, self.width, self.height];
        v.iter().all(|f| f.is_finite() && (0.0..=1.0).contains(f))
            && self.x + self.width <= 1.0 + f32::EPSILON
            && self.y + self.height <= 1.0 + f32::EPSILON
    }
}

/// Tuning derived from the user-facing settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyserSettings {
    /// Grid columns; rows follow the frame's aspect ratio.
    pub grid_columns: u32,
    /// 0 (least sensitive) to 100 (most sensitive).
    pub sensitivity: u8,
    /// Consecutive frames with changed cells needed to report motion (at least 1).
    pub confirm_frames: u32,
    /// Areas to ignore.
    pub exclude: Vec<ExclusionZone>,
}

/// The result of comparing one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameScore {
    /// Whether motion is reported for this frame (after confirmation).
    pub motion: bool,
    /// Included cells that changed in this frame.
    pub changed_cells: u32,
    /// Cells taking part (grid cells minus excluded ones).
    pub included_cells: u32,
    /// Changed cells needed for a frame to count.
    pub min_cells: u32,
    /// Still learning the background/noise (no motion reported).
    pub warming_up: bool,
}

/// Frames used to learn background and noise before anything is reported.
const WARMUP_FRAMES: u32 = 5;
/// Fewest changed cells that count, whatever the sensitivity: one cell is too little evidence.
const MIN_CELLS: u32 = 2;
/// Background update rate for quiet and changed cells (per analysed frame).
const BG_RATE_QUIET: f32 = 0.2;
const BG_RATE_CHANGED: f32 = 0.02;
/// Noise estimate update rate (its input is clipped at twice the estimate) and its lower
/// bound, in luma levels.
const NOISE_RATE: f32 = 0.05;
const NOISE_MIN: f32 = 0.25;

/// Background model and comparison for one camera.
#[derive(Debug, Clone)]
pub struct MotionAnalyser {
    settings: AnalyserSettings,
    /// Frame geometry the model was built for.
    geometry: Option<Geometry>,
    background: Vec<f32>,
    noise: Vec<f32>,
    included: Vec<bool>,
    scratch: Vec<f32>,
    /// Reused per frame: cell sums, sample counts, column edges, differences, noises.
    work: Work,
    frames: u32,
    streak: u32,
}

#[derive(Debug, Clone, Default)]
struct Work {
    sums: Vec<u32>,
    counts: Vec<u32>,
    col_edges: Vec<usize>,
    values: Vec<f32>,
}

/// Samples at most about this many pixels per row (see the module docs).
const SAMPLED_WIDTH: usize = 480;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    width: usize,
    height: usize,
    cols: usize,
    rows: usize,
}

impl MotionAnalyser {
    /// A new analyser; the model is built on the first frame.
    pub fn new(settings: AnalyserSettings) -> Self {
        Self {
            settings,
            geometry: None,
            background: Vec::new(),
            noise: Vec::new(),
            included: Vec::new(),
            scratch: Vec::new(),
            work: Work::default(),
            frames: 0,
            streak: 0,
        }
    }

    /// Forgets the background (e.g. after the stream changed resolution).
    pub fn reset(&mut self) {
        self.geometry = None;
        self.frames = 0;
        self.streak = 0;
    }

    /// Per-cell threshold factor `k` and absolute floor (luma levels) for a sensitivity.
    fn thresholds(&self) -> (f32, f32, f32) {
        let insensitivity = f32::from(100 - self.settings.sensitivity.min(100)) / 100.0;
        let k = 5.0 + 7.0 * insensitivity;
        // At least 2 levels: an encoder's keyframe quality pulse moves cell means by about that.
        let floor = 2.0 + 3.0 * insensitivity;
        let min_fraction = 0.002 + 0.02 * insensitivity;
        (k, floor, min_fraction)
    }

    /// Compares one frame's luma plane (`stride` bytes per row, at least `height` rows).
    /// Returns `None` (and keeps the model) if the plane is smaller than claimed.
    pub fn analyse(
        &mut self,
        luma: &[u8],
        width: usize,
        height: usize,
        stride: usize,
    ) -> Option<FrameScore> {
        let needed = stride
            .checked_mul(height.checked_sub(1)?)?
            .checked_add(width)?;
        if width < 2 || height < 2 || stride < width || luma.len() < needed {
            return None;
        }
        let cols = self.settings.grid_columns.clamp(4, 128) as usize;
        let rows = (cols * height / width).clamp(2, 128);
        let geometry = Geometry {
            width,
            height,
            cols,
            rows,
        };
        if self.geometry != Some(geometry) {
            self.rebuild(geometry);
        }
        cell_means(luma, geometry, stride, &mut self.work, &mut self.scratch)?;
        if self.background.len() != self.scratch.len() {
            self.background.clone_from(&self.scratch);
        }

        let (k, floor, min_fraction) = self.thresholds();
        let included_cells = self.included.iter().filter(|&&i| i).count();
        let min_cells = ((included_cells as f32 * min_fraction).ceil() as u32).max(MIN_CELLS);

        // Global light change (exposure, lamps, clouds): current ≈ gain · background + offset
        // over most cells. Each cell is compared after undoing it.
        let (gain, offset) = light_change(
            &self.scratch,
            &self.background,
            &self.included,
            &mut self.work.values,
        );
        let values = &mut self.work.values;

        // A cell's noise estimate counts as at least half the typical one: after a short
        // warm-up some estimates are low by chance and would fire on plain noise.
        values.clear();
        values.extend(
            self.noise
                .iter()
                .zip(&self.included)
                .filter(|(_, inc)| **inc)
                .map(|(n, _)| *n),
        );
        let noise_floor = 0.5 * median(values);

        let warming_up = self.frames < WARMUP_FRAMES;
        let mut changed = 0u32;
        for (((cur, bg), noise), inc) in self
            .scratch
            .iter()
            .zip(&mut self.background)
            .zip(&mut self.noise)
            .zip(&self.included)
        {
            let normalised = (cur - offset) / gain;
            let d = (normalised - *bg).abs();
            let is_changed = !warming_up && d > k * noise.max(noise_floor) + floor;
            if is_changed && *inc {
                changed += 1;
            }
            let bg_rate = if is_changed {
                BG_RATE_CHANGED
            } else {
                BG_RATE_QUIET
            };
            *bg += bg_rate * (normalised - *bg);
            // Warm-up: plain average of the first differences (frame 0 has none). Later, the
            // input is clipped so a moving object hardly inflates the estimate, while a cell
            // whose estimate started too low can still recover.
            let (rate, input) = if warming_up {
                (
                    if self.frames == 0 {
                        0.0
                    } else {
                        1.0 / self.frames as f32
                    },
                    d,
                )
            } else {
                (NOISE_RATE, d.min(2.0 * *noise))
            };
            *noise = (*noise + rate * (input - *noise)).max(NOISE_MIN);
        }
        self.frames = self.frames.saturating_add(1);
        let frame_has_change = !warming_up && changed >= min_cells;
        self.streak = if frame_has_change {
            self.streak.saturating_add(1)
        } else {
            0
        };
        Some(FrameScore {
            motion: self.streak >= self.settings.confirm_frames.max(1),
            changed_cells: changed,
            included_cells: included_cells as u32,
            min_cells,
            warming_up,
        })
    }

    fn rebuild(&mut self, g: Geometry) {
        let cells = g.cols * g.rows;
        self.geometry = Some(g);
        self.frames = 0;
        self.streak = 0;
        self.scratch = vec![0.0; cells];
        self.noise = vec![NOISE_MIN; cells];
        self.included = (0..cells)
            .map(|i| {
                let cx = ((i % g.cols) as f32 + 0.5) / g.cols as f32;
                let cy = ((i / g.cols) as f32 + 0.5) / g.rows as f32;
                !self.settings.exclude.iter().any(|z| z.contains(cx, cy))
            })
            .collect();
        self.background = Vec::new();
    }
}

/// Fills `out` with per-cell mean luma, sampling every `step`-th pixel of every `step`-th row.
fn cell_means(
    luma: &[u8],
    g: Geometry,
    stride: usize,
    work: &mut Work,
    out: &mut [f32],
) -> Option<()> {
    let step = (g.width / SAMPLED_WIDTH).max(2);
    let Work {
        sums,
        counts,
        col_edges,
        ..
    } = work;
    sums.clear();
    sums.resize(g.cols * g.rows, 0);
    counts.clear();
    counts.resize(g.cols * g.rows, 0);
    col_edges.clear();
    col_edges.extend((0..=g.cols).map(|c| c * g.width / g.cols));
    for (y, row) in luma.chunks(stride).take(g.height).enumerate().step_by(step) {
        let row = row.get(..g.width)?;
        let cell_row = y * g.rows / g.height;
        for (c, edge) in col_edges.windows(2).enumerate() {
            let (&[x0, x1], idx) = (edge, cell_row * g.cols + c) else {
                continue;
            };
            // Start each cell on the global sampling lattice so cells sample evenly.
            let first = x0.div_ceil(step) * step;
            let (sum, n) = row
                .get(first.min(x1)..x1)?
                .iter()
                .step_by(step)
                .fold((0u32, 0u32), |(s, n), &p| (s + u32::from(p), n + 1));
            *sums.get_mut(idx)? += sum;
            *counts.get_mut(idx)? += n;
        }
    }
    for ((o, s), n) in out.iter_mut().zip(sums.iter()).zip(counts.iter()) {
        *o = if *n == 0 { 0.0 } else { *s as f32 / *n as f32 };
    }
    Some(())
}

/// Below this spread of the background's cell means (luma levels, standard deviation) a gain
/// cannot be told from an offset: a flat scene gets the offset alone.
const GAIN_MIN_SPREAD: f32 = 4.0;
/// Gains outside this range are not a light change the model follows.
const GAIN_RANGE: (f32, f32) = (0.5, 2.0);

/// `(gain, offset)` with `current ≈ gain · background + offset` on the included cells: a
/// least-squares fit, then a second fit on the cells it explains best (residual within twice
/// the median), so the cells a moving object covers do not bend it. `scratch` is reused.
fn light_change(
    current: &[f32],
    background: &[f32],
    included: &[bool],
    scratch: &mut Vec<f32>,
) -> (f32, f32) {
    let cells = || {
        current
            .iter()
            .zip(background)
            .zip(included)
            .filter(|(_, inc)| **inc)
            .map(|((c, b), _)| (*b, *c))
    };
    let fit = |keep: &dyn Fn(f32, f32) -> bool| -> Option<(f32, f32)> {
        let (mut n, mut sx, mut sy, mut sxx, mut sxy) = (0f32, 0f32, 0f32, 0f32, 0f32);
        for (x, y) in cells().filter(|(x, y)| keep(*x, *y)) {
            n += 1.0;
            sx += x;
            sy += y;
            sxx += x * x;
            sxy += x * y;
        }
        if n < 2.0 {
            return None;
        }
        let var = sxx / n - (sx / n) * (sx / n);
        if var < GAIN_MIN_SPREAD * GAIN_MIN_SPREAD {
            return None;
        }
        let gain = ((sxy / n - sx / n * sy / n) / var).clamp(GAIN_RANGE.0, GAIN_RANGE.1);
        Some((gain, sy / n - gain * sx / n))
    };
    let offset_only = |scratch: &mut Vec<f32>| {
        scratch.clear();
        scratch.extend(cells().map(|(x, y)| y - x));
        (1.0, median(scratch))
    };
    let Some((g0, o0)) = fit(&|_, _| true) else {
        return offset_only(scratch);
    };
    scratch.clear();
    scratch.extend(cells().map(|(x, y)| (y - g0 * x - o0).abs()));
    let bound = 2.0 * median(scratch).max(0.5);
    fit(&|x, y| (y - g0 * x - o0).abs() <= bound).unwrap_or_else(|| offset_only(scratch))
}

fn median(values: &mut [f32]) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let mid = values.len() / 2;
    let (_, m, _) = values.select_nth_unstable_by(mid, f32::total_cmp);
    *m
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    const W: usize = 320;
    const H: usize = 180;

    /// A gray frame with uniform per-pixel noise of ±`amp` and optional bright squares.
    fn frame(seed: &mut u64, amp: i32, base: i32, squares: &[(usize, usize, usize)]) -> Vec<u8> {
        let mut f = vec![0u8; W * H];
        for (i, p) in f.iter_mut().enumerate() {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = ((*seed >> 33) % (2 * amp as u64 + 1)) as i32 - amp;
            let (x, y) = (i % W, i / W);
            let inside = squares
                .iter()
                .any(|&(sx, sy, s)| x >= sx && x < sx + s && y >= sy && y < sy + s);
            *p = (if inside { 230 } else { base } + n).clamp(0, 255) as u8;
        }
        f
    }

    fn analyser(sensitivity: u8, exclude: Vec<ExclusionZone>) -> MotionAnalyser {
        MotionAnalyser::new(AnalyserSettings {
            grid_columns: 32,
            sensitivity,
            confirm_frames: 2,
            exclude,
        })
    }

    #[test]
    fn noisy_static_scene_reports_no_motion() {
        let mut seed = 1;
        for sensitivity in [0, 50, 100] {
            let mut a = analyser(sensitivity, vec![]);
            for _ in 0..200 {
                let s = a.analyse(&frame(&mut seed, 30, 100, &[]), W, H, W).unwrap();
                assert!(!s.motion, "sensitivity {sensitivity}: {s:?}");
            }
        }
    }

    #[test]
    fn moving_square_is_motion_after_confirmation() {
        let mut seed = 2;
        let mut a = analyser(50, vec![]);
        for _ in 0..10 {
            assert!(
                !a.analyse(&frame(&mut seed, 20, 100, &[]), W, H, W)
                    .unwrap()
                    .motion
            );
        }
        let first = a
            .analyse(&frame(&mut seed, 20, 100, &[(40, 40, 40)]), W, H, W)
            .unwrap();
        assert!(
            !first.motion && first.changed_cells >= first.min_cells,
            "{first:?}"
        );
        let second = a
            .analyse(&frame(&mut seed, 20, 100, &[(50, 40, 40)]), W, H, W)
            .unwrap();
        assert!(second.motion, "{second:?}");
    }

    #[test]
    fn exclusion_zone_hides_motion_inside_it() {
        let zone = ExclusionZone {
            x: 0.0,
            y: 0.0,
            width: 0.5,
            height: 0.5,
        };
        assert!(zone.is_valid());
        let mut seed = 3;
        let mut a = analyser(100, vec![zone]);
        for i in 0..20 {
            let s = a
                .analyse(&frame(&mut seed, 20, 100, &[(10 + 3 * i, 10, 40)]), W, H, W)
                .unwrap();
            assert!(!s.motion, "{s:?}");
            assert!(s.included_cells < 32 * 18);
        }
    }

    #[test]
    fn global_brightness_change_is_not_motion() {
        let mut seed = 4;
        let mut a = analyser(50, vec![]);
        for _ in 0..10 {
            a.analyse(&frame(&mut seed, 10, 100, &[]), W, H, W).unwrap();
        }
        for _ in 0..5 {
            let s = a.analyse(&frame(&mut seed, 10, 140, &[]), W, H, W).unwrap();
            assert!(!s.motion, "{s:?}");
        }
    }

    #[test]
    fn short_or_inconsistent_planes_are_refused() {
        let mut a = analyser(50, vec![]);
        assert!(a.analyse(&[0u8; 100], W, H, W).is_none());
        assert!(
            a.analyse(&[0u8; 100], 10, 10, 5).is_none(),
            "stride < width"
        );
        assert!(a.analyse(&[], 0, 0, 0).is_none());
    }

    #[test]
    fn stride_padding_is_ignored() {
        let mut seed = 5;
        let stride = W + 32;
        let mut a = analyser(50, vec![]);
        for _ in 0..10 {
            let f = frame(&mut seed, 10, 100, &[]);
            let mut padded = vec![255u8; stride * H];
            for (dst, src) in padded.chunks_mut(stride).zip(f.chunks(W)) {
                dst[..W].copy_from_slice(src);
            }
            assert!(!a.analyse(&padded, W, H, stride).unwrap().motion);
        }
    }

    #[test]
    fn invalid_zones_are_detected() {
        assert!(
            !ExclusionZone {
                x: 0.8,
                y: 0.0,
                width: 0.5,
                height: 0.1
            }
            .is_valid()
        );
        assert!(
            !ExclusionZone {
                x: f32::NAN,
                y: 0.0,
                width: 0.5,
                height: 0.1
            }
            .is_valid()
        );
    }
}
