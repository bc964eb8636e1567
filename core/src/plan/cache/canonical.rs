//! The canonical encoding of a cached task's inputs, for its key: every value with a
//! tag of its kind, strings and bytes with their lengths, floats by their bits (so
//! `NaN`, `inf` and `-inf` are three keys, where JSON would write `null` for each),
//! map entries of any key type sorted by their encoded key (so a `HashMap` encodes
//! the same in any iteration order, whatever features `serde_json` has).
//!
//! Written here rather than taken from a crate: JSON loses non-finite floats and
//! needs string keys, postcard and bincode keep a map's iteration order, and the
//! encoding is hashed, never read back, so it needs no deserializer.

use serde::ser::{self, Serialize};

/// Appends the canonical encoding of `value` to `out`.
pub(super) fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), Error> {
    value.serialize(&mut Writer { out })
}

/// Why a value could not be encoded: its `Serialize` said so.
#[derive(Debug)]
pub(super) struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        Error(message.to_string())
    }
}

// One tag per kind of value; `END` closes a sequence, tuple, map or struct, and is
// never a value's first byte, so no encoding is a prefix of another.
const BOOL: u8 = 1;
const INT: u8 = 2;
const UINT: u8 = 3;
const INT128: u8 = 4;
const UINT128: u8 = 5;
const F32: u8 = 6;
const F64: u8 = 7;
const CHAR: u8 = 8;
const STR: u8 = 9;
const BYTES: u8 = 10;
const NONE: u8 = 11;
const SOME: u8 = 12;
const UNIT: u8 = 13;
const UNIT_STRUCT: u8 = 14;
const UNIT_VARIANT: u8 = 15;
const NEWTYPE_STRUCT: u8 = 16;
const NEWTYPE_VARIANT: u8 = 17;
const SEQ: u8 = 18;
const END: u8 = 19;
const TUPLE: u8 = 20;
const TUPLE_VARIANT: u8 = 21;
const MAP: u8 = 22;
const STRUCT: u8 = 23;
const STRUCT_VARIANT: u8 = 24;

struct Writer<'o> {
    out: &'o mut Vec<u8>,
}

impl Writer<'_> {
    fn tag(&mut self, tag: u8) {
        self.out.push(tag);
    }

    fn len(&mut self, len: usize) {
        self.out.extend_from_slice(&(len as u64).to_le_bytes());
    }

    fn text(&mut self, text: &str) {
        self.len(text.len());
        self.out.extend_from_slice(text.as_bytes());
    }

    fn variant(&mut self, tag: u8, index: u32, name: &str) {
        self.tag(tag);
        self.out.extend_from_slice(&index.to_le_bytes());
        self.text(name);
    }
}

/// A map being written: its entries, each encoded on its own, sorted at the end.
struct Map<'w, 'o> {
    writer: &'w mut Writer<'o>,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<'w, 'o> ser::Serializer for &'w mut Writer<'o> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Map<'w, 'o>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.tag(BOOL);
        self.out.push(u8::from(v));
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.tag(INT);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.tag(INT128);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.tag(UINT);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.tag(UINT128);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.tag(F32);
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.tag(F64);
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.tag(CHAR);
        self.out.extend_from_slice(&u32::from(v).to_le_bytes());
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.tag(STR);
        self.text(v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.tag(BYTES);
        self.len(v.len());
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.tag(NONE);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        self.tag(SOME);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.tag(UNIT);
        Ok(())
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<(), Error> {
        self.tag(UNIT_STRUCT);
        self.text(name);
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.variant(UNIT_VARIANT, index, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.tag(NEWTYPE_STRUCT);
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.variant(NEWTYPE_VARIANT, index, variant);
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Error> {
        self.tag(SEQ);
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Error> {
        self.tag(TUPLE);
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        self.tag(TUPLE);
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, Error> {
        self.variant(TUPLE_VARIANT, index, variant);
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Map<'w, 'o>, Error> {
        self.tag(MAP);
        Ok(Map {
            writer: self,
            entries: Vec::new(),
        })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        self.tag(STRUCT);
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, Error> {
        self.variant(STRUCT_VARIANT, index, variant);
        Ok(self)
    }
}

/// The compound kinds but maps: their elements in order, then `END`.
macro_rules! in_order {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for &mut Writer<'_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), Error> {
                self.tag(END);
                Ok(())
            }
        }
    )*};
}

in_order!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// Struct fields come in their declaration order, each after its name.
macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for &mut Writer<'_> {
            type Ok = ();
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                name: &'static str,
                value: &T,
            ) -> Result<(), Error> {
                self.text(name);
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), Error> {
                self.tag(END);
                Ok(())
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Map<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        let mut encoded = Vec::new();
        encode(key, &mut encoded)?;
        self.entries.push((encoded, Vec::new()));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let Some((_, slot)) = self.entries.last_mut() else {
            return Err(Error("a map's value came before its key".into()));
        };
        encode(value, slot)
    }
    fn end(mut self) -> Result<(), Error> {
        self.entries.sort_unstable();
        let out = &mut *self.writer;
        for (key, value) in &self.entries {
            out.len(key.len());
            out.out.extend_from_slice(key);
            out.len(value.len());
            out.out.extend_from_slice(value);
        }
        out.tag(END);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    fn bytes<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        super::encode(value, &mut out).unwrap();
        out
    }

    #[test]
    fn non_finite_floats_and_signed_zeros_are_distinct() {
        let all = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, 1.5];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(bytes(a), bytes(b), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn maps_encode_the_same_in_any_order_with_any_key_type() {
        let pairs: Vec<((i32, i32), u8)> = (0..50).map(|i| ((i, -i), i as u8)).collect();
        let forward: HashMap<_, _> = pairs.iter().copied().collect();
        let backward: HashMap<_, _> = pairs.iter().rev().copied().collect();
        let sorted: BTreeMap<_, _> = pairs.iter().copied().collect();
        assert_eq!(bytes(&forward), bytes(&backward));
        assert_eq!(bytes(&forward), bytes(&sorted));
    }

    #[test]
    fn different_shapes_never_collide() {
        // A string and the bytes of the same text, a unit and an empty tuple, nested
        // sequences split differently, an option and its value.
        assert_ne!(bytes("ab"), bytes(&b"ab"[..]));
        assert_ne!(
            bytes(&vec![vec![1u8], vec![]]),
            bytes(&vec![vec![], vec![1u8]])
        );
        assert_ne!(bytes(&Some(3u8)), bytes(&3u8));
        assert_ne!(bytes(&("a", "bc")), bytes(&("ab", "c")));
        assert_ne!(bytes(&()), bytes(&Vec::<u8>::new()));
    }
}
