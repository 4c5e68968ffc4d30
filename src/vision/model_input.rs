//! Model inputs: the detector and the mask classifier take RGB scaled to -1..1, which
//! the warps write straight into the input tensor (a float output [`Texel`]).

use super::warp::Texel;
use super::Error;

/// `v / 127.5 - 1` for every byte value, computed once: a table read per value instead
/// of a division, with results bit-identical to the arithmetic.
const UNIT_RANGE: [f32; 256] = {
    let mut table = [0.0f32; 256];
    let mut v = 0;
    while v < 256 {
        table[v] = v as f32 / 127.5 - 1.0;
        v += 1;
    }
    table
};

/// A float output of a warp is a model input value: the byte scaled to -1..1.
impl Texel for f32 {
    const BLACK: f32 = -1.0;
    fn from_byte(v: u8) -> f32 {
        UNIT_RANGE[usize::from(v)]
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
    fn float_texels_equal_the_arithmetic_for_every_byte() {
        for v in 0..=255u8 {
            assert_eq!(f32::from_byte(v), f32::from(v) / 127.5 - 1.0);
        }
        assert_eq!(f32::from_byte(0), f32::BLACK);
        assert_eq!(f32::from_byte(255), 1.0);
    }

    #[test]
    fn an_input_of_the_wrong_size_is_a_typed_error() {
        let mut tensor = [0.0f32; 12];
        assert!(square_rgb_input(&mut tensor, 3, "test").is_err());
        assert_eq!(square_rgb_input(&mut tensor, 2, "test").unwrap().len(), 12);
    }
}
