//! Model inputs: the detector and the mask classifier take RGB scaled to -1..1, which
//! the warps write straight into the input tensor (a float output [`Texel`]).

use super::warp::Texel;
use super::Error;

/// The model inputs' scale: bytes 0..=255 to -1..=1.
const UNIT_RANGE_SCALE: f32 = 1.0 / 127.5;

/// A float output of a warp is a model input value: the byte scaled to -1..1, as
/// `(v - 127.5) / 127.5` with the division as a multiplication (two vector operations
/// per four values when the warps convert a row at once). Within 1e-7 of the exact
/// value for every byte, with -1, 1 and the symmetry around 127.5 exact.
impl Texel for f32 {
    const BLACK: f32 = -1.0;
    fn from_byte(v: u8) -> f32 {
        (f32::from(v) - 127.5) * UNIT_RANGE_SCALE
    }
}

/// `tensor`, checked to hold a `side x side` RGB image; `model` names the model in the
/// error.
pub(super) fn square_rgb_input<'t>(
    tensor: &'t mut [f32],
    side: u32,
    model: &str,
) -> Result<&'t mut [f32], Error> {
    let expected = side as usize * side as usize * 3;
    if tensor.len() != expected {
        return Err(Error::ModelOutput(format!(
            "{model} input holds {} values, expected {expected} ({side}x{side} RGB)",
            tensor.len()
        )));
    }
    Ok(tensor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_texels_are_the_byte_scaled_to_unit_range_for_every_byte() {
        for v in 0..=255u8 {
            let exact = f64::from(v) / 127.5 - 1.0;
            let got = f32::from_byte(v);
            assert!(
                (f64::from(got) - exact).abs() < 1e-7,
                "{v}: {got} vs {exact}"
            );
            // Symmetric around the middle: v and 255 - v map to opposite values.
            assert_eq!(got, -f32::from_byte(255 - v), "{v}");
        }
        assert_eq!(f32::from_byte(0), f32::BLACK);
        assert_eq!(f32::from_byte(255), 1.0);
    }

    #[test]
    fn a_row_converts_as_its_bytes_one_by_one() {
        let bytes: Vec<u8> = (0..=255).chain((0..=255).rev()).collect();
        let mut row = vec![0.0f32; bytes.len()];
        f32::from_bytes(&bytes, &mut row);
        for (&b, &f) in bytes.iter().zip(&row) {
            assert_eq!(f, f32::from_byte(b));
        }
    }

    #[test]
    fn an_input_of_the_wrong_size_is_a_typed_error() {
        let mut tensor = [0.0f32; 12];
        assert!(square_rgb_input(&mut tensor, 3, "test").is_err());
        assert_eq!(square_rgb_input(&mut tensor, 2, "test").unwrap().len(), 12);
    }
}
