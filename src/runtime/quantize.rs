//! Filling a model input with real values whatever its element type.

/// A model input that takes real values whatever its element type: float32 stores them
/// as they are; int8 and uint8 store `round(value / scale) + zero_point`, saturated to
/// the type's range (TensorFlow Lite's quantization), rounding half to even with the
/// reciprocal scale as XNNPACK's quantize operator does, so that a full-integer file
/// sees the bytes its float-input twin would give itself (tests/embedder_io.rs).
pub enum QuantizingInput<'a> {
    Float(&'a mut [f32]),
    Bytes {
        bytes: &'a mut [u8],
        /// Where the real values are written first (resized to the input's length).
        values: &'a mut Vec<f32>,
        inv_scale: f32,
        zero: f32,
        signed: bool,
    },
}

impl QuantizingInput<'_> {
    /// Number of values the input holds.
    pub fn len(&self) -> usize {
        match self {
            QuantizingInput::Float(v) => v.len(),
            QuantizingInput::Bytes { bytes, .. } => bytes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lets `write` set every value as f32: straight into a float32 input (no copy: the
    /// shipped files' case), or into a scratch buffer that is then quantized.
    pub fn fill(&mut self, write: impl FnOnce(&mut [f32])) {
        match self {
            QuantizingInput::Float(values) => write(values),
            QuantizingInput::Bytes {
                bytes,
                values,
                inv_scale,
                zero,
                signed,
            } => {
                values.clear();
                values.resize(bytes.len(), 0.0);
                write(values);
                for (byte, &value) in bytes.iter_mut().zip(values.iter()) {
                    *byte = quantize(value, *inv_scale, *zero, *signed);
                }
            }
        }
    }
}

fn quantize(value: f32, inv_scale: f32, zero: f32, signed: bool) -> u8 {
    let q = (value * inv_scale).round_ties_even() + zero;
    if signed {
        q.clamp(-128.0, 127.0) as i8 as u8
    } else {
        q.clamp(0.0, 255.0) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quantized_half_to_even_and_saturated() {
        let mut bytes = [0u8; 6];
        let mut values = Vec::new();
        let mut input = QuantizingInput::Bytes {
            bytes: &mut bytes,
            values: &mut values,
            inv_scale: 2.0,
            zero: -1.0,
            signed: true,
        };
        input.fill(|v| v.copy_from_slice(&[0.25, 0.75, -0.25, 100.0, -100.0, f32::NAN]));
        // 0.5 -> 0, 1.5 -> 2, -0.5 -> -0 (ties to even), then the zero point; saturation.
        assert_eq!(bytes.map(|b| b as i8), [-1, 1, -1, 127, -128, 0]);
        let mut bytes = [0u8; 2];
        let mut values = Vec::new();
        let mut input = QuantizingInput::Bytes {
            bytes: &mut bytes,
            values: &mut values,
            inv_scale: 1.0,
            zero: 128.0,
            signed: false,
        };
        input.fill(|v| v.copy_from_slice(&[-1000.0, 1000.0]));
        assert_eq!(bytes, [0, 255]);
    }

    #[test]
    fn a_float_input_is_written_in_place() {
        let mut values = [0.0f32; 3];
        QuantizingInput::Float(&mut values).fill(|v| v.copy_from_slice(&[1.5, -2.0, 0.1]));
        assert_eq!(values, [1.5, -2.0, 0.1]);
    }
}
