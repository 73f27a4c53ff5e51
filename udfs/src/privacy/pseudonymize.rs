//! `pseudonymize(value, key)` and `pseudonymize_bigint(value, key)`: a keyed HMAC-SHA-256
//! of the value, so that a table can be shared with its user ids replaced by stable tokens
//! that nobody without the key can link back (a plain hash of an id can be reversed by
//! hashing every possible id). The same key gives the same token everywhere, so joins
//! across shared tables keep working.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Builder, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::aggregate_state::scalar_or_array;
use crate::error::user_error;

/// HMAC-SHA-256 of `data` under `key` (RFC 2104 with SHA-256, as RFC 4231 tests it).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The two output forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Output {
    /// 64 lower-case hex digits.
    Hex,
    /// The first 8 bytes of the MAC as a big-endian signed integer: a compact key that
    /// joins fast, with a collision chance of about n²/2⁶⁵ for n distinct values.
    BigInt,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Pseudonymize {
    output: Output,
    signature: Signature,
}

/// `pseudonymize` and `pseudonymize_bigint`.
pub fn all() -> Vec<ScalarUDF> {
    [Output::Hex, Output::BigInt]
        .into_iter()
        .map(|output| {
            ScalarUDF::from(Pseudonymize {
                output,
                signature: Signature::new(TypeSignature::UserDefined, Volatility::Immutable),
            })
        })
        .collect()
}

impl ScalarUDFImpl for Pseudonymize {
    fn name(&self) -> &str {
        match self.output {
            Output::Hex => "pseudonymize",
            Output::BigInt => "pseudonymize_bigint",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Binary values and keys are hashed as they are; anything else as its text.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return Err(user_error(format!(
                "{}(value, key) takes 2 arguments, got {}",
                self.name(),
                arg_types.len()
            )));
        }
        Ok(arg_types
            .iter()
            .map(|t| match t {
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
                _ => DataType::Utf8,
            })
            .collect())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.output {
            Output::Hex => DataType::Utf8,
            Output::BigInt => DataType::Int64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        // One row when every argument is a scalar (the result is then a scalar too).
        let rows = arrays[0].len();
        let bytes = |a: &ArrayRef, i: usize| -> Option<Vec<u8>> {
            if a.is_null(i) {
                return None;
            }
            Some(match a.data_type() {
                DataType::Binary => a.as_binary::<i32>().value(i).to_vec(),
                _ => a.as_string::<i32>().value(i).as_bytes().to_vec(),
            })
        };
        let (values, keys) = (&arrays[0], &arrays[1]);
        let mut texts = StringBuilder::new();
        let mut ints = Int64Builder::new();
        for i in 0..rows {
            let (Some(value), Some(key)) = (bytes(values, i), bytes(keys, i)) else {
                texts.append_null();
                ints.append_null();
                continue;
            };
            if key.is_empty() {
                return Err(user_error(format!(
                    "{}: the key must not be empty",
                    self.name()
                )));
            }
            let mac = hmac_sha256(&key, &value);
            match self.output {
                Output::Hex => texts.append_value(hex::encode(mac)),
                Output::BigInt => {
                    let mut first = [0u8; 8];
                    first.copy_from_slice(&mac[..8]);
                    ints.append_value(i64::from_be_bytes(first));
                }
            }
        }
        let out: ArrayRef = match self.output {
            Output::Hex => Arc::new(texts.finish()),
            Output::BigInt => Arc::new(ints.finish()),
        };
        scalar_or_array(&args.args, out)
    }
}

#[cfg(test)]
mod tests {
    use super::hmac_sha256;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    /// RFC 4231 §4.2–4.7, HMAC-SHA-256 (test case 5's output is truncated to 128 bits).
    #[test]
    fn rfc_4231_vectors() {
        let long_key = vec![0xaa; 131];
        let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                long_key.clone(),
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                long_key,
                b"This is a test using a larger than block-size key and a larger than \
                  block-size data. The key needs to be hashed before being used by the \
                  HMAC algorithm."
                    .to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, data, expected) in cases {
            assert_eq!(hex::encode(hmac_sha256(&key, &data)), expected);
        }
        // Test case 5: truncation to 128 bits.
        let mac = hmac_sha256(&[0x0c; 20], b"Test With Truncation");
        assert_eq!(hex::encode(&mac[..16]), "a3b6167473100ee06e0c796c2955552b");
    }
}
