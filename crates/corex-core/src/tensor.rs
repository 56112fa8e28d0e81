//! Tensors on the wire: flat little-endian f32, so bytes are identical on every machine.

use std::borrow::Cow;

use crate::error::DecodeError;

/// The wire bytes of `values`, borrowed on little-endian machines (no copy).
pub fn f32s_as_bytes(values: &[f32]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        Cow::Borrowed(bytemuck::cast_slice::<f32, u8>(values))
    } else {
        Cow::Owned(
            values
                .iter()
                .flat_map(|value| value.to_le_bytes())
                .collect(),
        )
    }
}

/// The wire bytes of `values`: one memory copy on little-endian machines.
pub fn f32s_to_bytes(values: &[f32]) -> Vec<u8> {
    f32s_as_bytes(values).into_owned()
}

/// BLAKE3 of the wire bytes of `values`, without copying them on little-endian machines.
pub fn hash_f32s(values: &[f32]) -> crate::Hash {
    crate::Hash::of(&f32s_as_bytes(values))
}

/// The values of wire bytes; errors unless the length is a multiple of 4. Any alignment works.
pub fn bytes_to_f32s(bytes: &[u8]) -> Result<Vec<f32>, DecodeError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(DecodeError::TensorLength(bytes.len()));
    }
    if cfg!(target_endian = "little") {
        Ok(bytemuck::pod_collect_to_vec::<u8, f32>(bytes))
    } else {
        Ok(bytes
            .chunks_exact(4)
            .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn tensors_round_trip_bit_for_bit(values in proptest::collection::vec(any::<u32>(), 0..64)) {
            let floats: Vec<f32> = values.iter().map(|bits| f32::from_bits(*bits)).collect();
            let back = bytes_to_f32s(&f32s_to_bytes(&floats)).expect("whole floats");
            prop_assert_eq!(
                back.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
                values
            );
        }
    }

    #[test]
    fn a_ragged_length_is_an_error() {
        assert_eq!(bytes_to_f32s(&[0; 5]), Err(DecodeError::TensorLength(5)));
    }
}
