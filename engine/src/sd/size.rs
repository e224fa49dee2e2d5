//! Image sizes from an aspect ratio: the largest size within a pixel budget
//! whose sides are multiples of what the model needs and whose shape is
//! close to the asked ratio.

/// Width and height in pixels for `aspect` (width:height).
///
/// Among sizes with both sides multiples of `multiple` and area at most
/// `budget` pixels, takes the largest whose ratio is within 10% of the asked
/// one, else the one with the closest ratio.
pub fn dimensions(aspect: (u32, u32), budget: u32, multiple: u32) -> (u32, u32) {
    let (aw, ah) = (aspect.0.max(1) as f64, aspect.1.max(1) as f64);
    let target = (aw / ah).ln();
    let multiple = multiple.max(1);
    let max_side = budget / multiple;
    let mut best_close: Option<(u32, u32)> = None;
    let mut best_any: Option<((u32, u32), f64)> = None;
    let mut width = multiple;
    while width <= max_side.max(multiple) {
        let ideal_height = width as f64 * ah / aw;
        let floor = ((ideal_height / multiple as f64).floor() as u32).max(1) * multiple;
        for height in [floor, floor + multiple] {
            if u64::from(width) * u64::from(height) > u64::from(budget) {
                continue;
            }
            let error = ((width as f64 / height as f64).ln() - target).abs();
            let area = width * height;
            if error <= 0.1 && best_close.is_none_or(|(w, h)| area > w * h) {
                best_close = Some((width, height));
            }
            if best_any.is_none_or(|(_, e)| error < e) {
                best_any = Some(((width, height), error));
            }
        }
        width += multiple;
    }
    best_close
        .or(best_any.map(|(size, _)| size))
        .unwrap_or((multiple, multiple))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(aspect: (u32, u32), budget: u32, expected: (u32, u32)) {
        assert_eq!(
            dimensions(aspect, budget, 64),
            expected,
            "{aspect:?} in {budget}"
        );
    }

    #[test]
    fn sizes_for_common_ratios() {
        let sd = 512 * 512;
        check((1, 1), sd, (512, 512));
        check((16, 9), sd, (640, 384));
        check((9, 16), sd, (384, 640));
        check((3, 2), sd, (576, 384));
        check((2, 3), sd, (384, 576));
        check((4, 3), sd, (576, 448));
        check((21, 9), sd, (768, 320));
        check((1, 1), 768 * 768, (768, 768));
        check((16, 9), 768 * 768, (1024, 576));
    }

    #[test]
    fn extreme_ratios_stay_within_budget() {
        let (w, h) = dimensions((100, 1), 512 * 512, 64);
        assert!(w * h <= 512 * 512 && h == 64, "{w}x{h}");
        let (w, h) = dimensions((1, 100), 512 * 512, 64);
        assert!(w * h <= 512 * 512 && w == 64, "{w}x{h}");
        assert_eq!(dimensions((1, 1), 100, 64), (64, 64));
    }
}
