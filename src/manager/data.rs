//! The server's data objects: `dict`, `list`, `Namespace`, `Value` and `Array`, holding values
//! as the codec's bytes (the server never needs the user's types).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::error::{ErrorKind, RemoteError};
use super::protocol::{self as p, args};
use crate::codec::{self, Decode, Encode};

type Bytes = Vec<u8>;
type Res = Result<Bytes, RemoteError>;

fn ok<T: Encode + ?Sized>(v: &T) -> Res {
    Ok(codec::to_bytes(v))
}

fn no_method(ty: &str, method: u16) -> RemoteError {
    RemoteError::new(ErrorKind::NoSuchMethod, format!("'{ty}' object has no method {method}"))
}

fn key_error(key: &[u8]) -> RemoteError {
    RemoteError::new(ErrorKind::Key, format!("key not found (encoded as {key:02x?})"))
}

/// Locks a mutex, ignoring poisoning (the server's own code does not panic while holding one;
/// a custom object's panic is caught and its state kept).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decodes an `i64` stored as bytes, for [`p::INCR`].
fn as_i64(bytes: Option<&Bytes>) -> Result<i64, RemoteError> {
    match bytes {
        None => Ok(0),
        Some(b) => i64::decode(&mut codec::Decoder::new(b))
            .ok()
            .filter(|_| b.len() == 8)
            .ok_or_else(|| RemoteError::new(ErrorKind::Type, "the value is not an i64")),
    }
}

/// A Python index into a sequence of `len`: negative counts from the end.
fn index(i: i64, len: usize, what: &str) -> Result<usize, RemoteError> {
    let len_i = len as i64;
    let j = if i < 0 { i + len_i } else { i };
    if (0..len_i).contains(&j) {
        Ok(j as usize)
    } else {
        Err(RemoteError::new(ErrorKind::Index, format!("{what} index out of range")))
    }
}

/// `dict()`.
#[derive(Debug, Default)]
pub(crate) struct Dict(Mutex<HashMap<Bytes, Bytes>>);

impl Dict {
    pub(crate) fn call(&self, method: u16, a: &[u8]) -> Res {
        let mut m = lock(&self.0);
        match method {
            p::GET => ok(&m.get(a).map(|v| Raw(v))),
            p::GET_ITEM => m.get(a).cloned().ok_or_else(|| key_error(a)),
            p::SET => {
                let (k, v): (Bytes, Bytes) = args(a)?;
                m.insert(k, v);
                ok(&())
            }
            p::DEL => m.remove(a).map(|_| Vec::new()).ok_or_else(|| key_error(a)),
            p::POP => m.remove(a).ok_or_else(|| key_error(a)),
            p::CONTAINS => ok(&m.contains_key(a)),
            p::LEN => ok(&(m.len() as u64)),
            p::KEYS => ok(&m.keys().collect::<Vec<_>>()),
            p::VALUES => ok(&m.values().collect::<Vec<_>>()),
            p::ITEMS => ok(&m.iter().collect::<Vec<_>>()),
            p::CLEAR => {
                m.clear();
                ok(&())
            }
            p::EXTEND => {
                let items: Vec<(Bytes, Bytes)> = args(a)?;
                m.extend(items);
                ok(&())
            }
            p::SET_DEFAULT => {
                let (k, v): (Bytes, Bytes) = args(a)?;
                Ok(m.entry(k).or_insert(v).clone())
            }
            p::INCR => {
                let (k, delta): (Bytes, i64) = args(a)?;
                let now = as_i64(m.get(&k))?.wrapping_add(delta);
                m.insert(k, codec::to_bytes(&now));
                ok(&now)
            }
            _ => Err(no_method("dict", method)),
        }
    }
}

/// A value's bytes, already encoded, written as they are: `Option<Raw>` decodes as `Option<V>`
/// on the client.
struct Raw<'a>(&'a [u8]);

impl Encode for Raw<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0);
    }
}

/// `list()` and `Array(...)` (an array cannot change its length).
#[derive(Debug)]
pub(crate) struct List {
    items: Mutex<Vec<Bytes>>,
    fixed: bool,
}

impl List {
    pub(crate) fn new(items: Vec<Bytes>, fixed: bool) -> List {
        List { items: Mutex::new(items), fixed }
    }

    pub(crate) fn call(&self, method: u16, a: &[u8]) -> Res {
        let ty = if self.fixed { "Array" } else { "list" };
        let mut l = lock(&self.items);
        let resizing =
            matches!(method, p::DEL | p::POP | p::CLEAR | p::APPEND | p::INSERT | p::EXTEND);
        if self.fixed && resizing {
            return Err(no_method(ty, method));
        }
        match method {
            p::GET => {
                let i = index(args(a)?, l.len(), ty)?;
                Ok(l[i].clone())
            }
            p::SET => {
                let (i, v): (i64, Bytes) = args(a)?;
                let what = if self.fixed { "Array" } else { "list assignment" };
                let i = index(i, l.len(), what)?;
                l[i] = v;
                ok(&())
            }
            p::DEL => {
                let i = index(args(a)?, l.len(), "list assignment")?;
                l.remove(i);
                ok(&())
            }
            p::POP => {
                let i: Option<i64> = args(a)?;
                if l.is_empty() {
                    return Err(RemoteError::new(ErrorKind::Index, "pop from empty list"));
                }
                let i = index(i.unwrap_or(-1), l.len(), "pop")?;
                Ok(l.remove(i))
            }
            p::LEN => ok(&(l.len() as u64)),
            p::CLEAR => {
                l.clear();
                ok(&())
            }
            p::APPEND => {
                l.push(a.to_vec());
                ok(&())
            }
            p::INSERT => {
                let (i, v): (i64, Bytes) = args(a)?;
                // Python's insert clamps the index.
                let len = l.len() as i64;
                let j = if i < 0 { (i + len).max(0) } else { i.min(len) };
                l.insert(j as usize, v);
                ok(&())
            }
            p::EXTEND => {
                let items: Vec<Bytes> = args(a)?;
                l.extend(items);
                ok(&())
            }
            p::TO_VEC => ok(&*l),
            _ => Err(no_method(ty, method)),
        }
    }
}

/// `Namespace()`.
#[derive(Debug, Default)]
pub(crate) struct Namespace(Mutex<BTreeMap<String, Bytes>>);

impl Namespace {
    pub(crate) fn call(&self, method: u16, a: &[u8]) -> Res {
        let mut m = lock(&self.0);
        let missing = |name: &str| {
            RemoteError::new(
                ErrorKind::Attribute,
                format!("'Namespace' object has no attribute '{name}'"),
            )
        };
        match method {
            p::GET => {
                let name: String = args(a)?;
                m.get(&name).cloned().ok_or_else(|| missing(&name))
            }
            p::SET => {
                let (name, v): (String, Bytes) = args(a)?;
                m.insert(name, v);
                ok(&())
            }
            p::DEL => {
                let name: String = args(a)?;
                m.remove(&name).map(|_| Vec::new()).ok_or_else(|| missing(&name))
            }
            p::CONTAINS => ok(&m.contains_key(&args::<String>(a)?)),
            p::KEYS => ok(&m.keys().collect::<Vec<_>>()),
            _ => Err(no_method("Namespace", method)),
        }
    }
}

/// `Value(v)`.
#[derive(Debug)]
pub(crate) struct Value(Mutex<Bytes>);

impl Value {
    pub(crate) fn new(v: Bytes) -> Value {
        Value(Mutex::new(v))
    }

    pub(crate) fn call(&self, method: u16, a: &[u8]) -> Res {
        let mut v = lock(&self.0);
        match method {
            p::GET => Ok(v.clone()),
            p::SET => {
                *v = a.to_vec();
                ok(&())
            }
            p::INCR => {
                let delta: i64 = args(a)?;
                let now = as_i64(Some(&v))?.wrapping_add(delta);
                *v = codec::to_bytes(&now);
                ok(&now)
            }
            _ => Err(no_method("Value", method)),
        }
    }
}
