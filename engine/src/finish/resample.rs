//! Pillow's resampling (`Image.resize` with BICUBIC or BILINEAR on 8-bit
//! RGB), ported exactly: separable, antialiased when shrinking (the filter
//! support grows with the reduction), fixed-point with 22 fractional bits,
//! rounding and clipping to 8 bits between the horizontal and the vertical
//! pass. CLIP's and open_nsfw's preprocessing were defined with it, and the
//! `image` crate's filters differ by up to 25 levels at hard edges.
//!
//! One known difference: Pillow 13 sometimes runs the vertical pass first
//! when one side grows and the other shrinks (its rule is not reproduced
//! here), and the rounding between passes then moves a few values by one.

use image::RgbImage;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Pillow's BICUBIC (a = -0.5, support 2).
    Bicubic,
    /// Pillow's BILINEAR (triangle, support 1).
    Bilinear,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bicubic => 2.0,
            Filter::Bilinear => 1.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output index: the first input index, and fixed-point weights.
fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| filter.weight((x as f64 - center + 0.5) / filter_scale))
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { *w };
                    let scaled = w * f64::from(1u32 << PRECISION_BITS);
                    if scaled < 0.0 {
                        (scaled - 0.5) as i32
                    } else {
                        (scaled + 0.5) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(value: i64) -> u8 {
    (value >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes as Pillow's `image.resize((width, height), filter)` does.
pub fn resize(image: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (in_w, in_h) = image.dimensions();
    let mut current = image.clone();
    if width != in_w {
        let coeffs = coefficients(in_w as usize, width as usize, filter);
        let mut out = RgbImage::new(width, in_h);
        for y in 0..in_h {
            for (xx, (xmin, weights)) in coeffs.iter().enumerate() {
                let mut sums = [1i64 << (PRECISION_BITS - 1); 3];
                for (i, w) in weights.iter().enumerate() {
                    let pixel = current.get_pixel((xmin + i) as u32, y).0;
                    for c in 0..3 {
                        sums[c] += i64::from(pixel[c]) * i64::from(*w);
                    }
                }
                out.put_pixel(xx as u32, y, image::Rgb(sums.map(clip8)));
            }
        }
        current = out;
    }
    if height != in_h {
        let coeffs = coefficients(in_h as usize, height as usize, filter);
        let mut out = RgbImage::new(width, height);
        for (yy, (ymin, weights)) in coeffs.iter().enumerate() {
            for x in 0..width {
                let mut sums = [1i64 << (PRECISION_BITS - 1); 3];
                for (i, w) in weights.iter().enumerate() {
                    let pixel = current.get_pixel(x, (ymin + i) as u32).0;
                    for c in 0..3 {
                        sums[c] += i64::from(pixel[c]) * i64::from(*w);
                    }
                }
                out.put_pixel(x, yy as u32, image::Rgb(sums.map(clip8)));
            }
        }
        current = out;
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_images_stay_flat_and_same_size_is_identity() {
        let flat = RgbImage::from_pixel(37, 23, image::Rgb([200, 10, 99]));
        for filter in [Filter::Bicubic, Filter::Bilinear] {
            for (w, h) in [(11, 7), (80, 64), (37, 50)] {
                let out = resize(&flat, w, h, filter);
                assert_eq!(out.dimensions(), (w, h));
                assert!(
                    out.pixels().all(|p| p.0 == [200, 10, 99]),
                    "{filter:?} {w}x{h}"
                );
            }
        }
        let noisy = RgbImage::from_fn(9, 5, |x, y| {
            image::Rgb([(x * 29) as u8, (y * 51) as u8, (x * y) as u8])
        });
        assert_eq!(resize(&noisy, 9, 5, Filter::Bicubic), noisy);
    }

    #[test]
    fn halving_with_bilinear_weights_like_pillow() {
        // Triangle filter stretched ×2, centred at 1.0: weights 3/7, 3/7,
        // 1/7 on the first three pixels (the fourth falls outside).
        let row = RgbImage::from_fn(4, 1, |x, _| image::Rgb([[0, 100, 200, 40][x as usize]; 3]));
        let out = resize(&row, 2, 1, Filter::Bilinear);
        assert_eq!(out.get_pixel(0, 0).0[0], 71); // (0·3 + 100·3 + 200·1) / 7 = 71.4
    }
}
