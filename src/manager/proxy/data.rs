//! Proxies of the data objects: [`DictProxy`], [`ListProxy`], [`NamespaceProxy`],
//! [`ValueProxy`], [`ArrayProxy`].

use std::fmt;
use std::marker::PhantomData;

use super::{Managed, Proxy, decode_items, encode_items};
use crate::codec::{self, Decode, Encode};
use crate::manager::error::ManagerError;
use crate::manager::protocol as p;

type R<T> = Result<T, ManagerError>;

macro_rules! proxy_common {
    ($name:ident < $($t:ident),* >, $typeid:literal, $init:ty, $init_fn:expr) => {
        impl<$($t),*> Clone for $name<$($t),*> {
            fn clone(&self) -> Self {
                $name { proxy: self.proxy.clone(), _t: PhantomData }
            }
        }

        impl<$($t),*> fmt::Debug for $name<$($t),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.proxy).finish()
            }
        }

        impl<$($t: Encode),*> Managed for $name<$($t),*> {
            const TYPEID: &'static str = $typeid;
            type Init = $init;
            fn init_bytes(init: &Self::Init) -> Vec<u8> {
                #[allow(clippy::redundant_closure_call)]
                ($init_fn)(init)
            }
            fn from_proxy(proxy: Proxy) -> Self {
                $name { proxy, _t: PhantomData }
            }
            fn proxy(&self) -> &Proxy {
                &self.proxy
            }
        }
    };
}

/// A proxy of a `dict` in the manager (Python's `manager.dict()`, a `DictProxy`): a map from
/// `K` to `V`.
///
/// Keys are compared by their encoding: two keys are equal when their [`Encode`] bytes are
/// (true of every std type with the crate's impls; a hand-written `Encode` should make equal
/// values encode equally). Iteration order ([`keys`](Self::keys), [`items`](Self::items)) is
/// unspecified (Python's is insertion order).
pub struct DictProxy<K, V> {
    proxy: Proxy,
    _t: PhantomData<fn() -> (K, V)>,
}

proxy_common!(DictProxy<K, V>, "dict", (), |_: &()| Vec::new());

impl<K: Encode, V: Encode + Decode> DictProxy<K, V> {
    /// `d.get(key)`: the value, or `None`.
    pub fn get(&self, key: &K) -> R<Option<V>> {
        let out = self.proxy.raw(p::GET, &codec::to_bytes(key))?;
        Ok(codec::from_bytes(&out)?)
    }

    /// `d[key]`: the value, or [`ErrorKind::Key`](crate::manager::ErrorKind::Key) if it is
    /// missing (Python's `KeyError`).
    pub fn get_item(&self, key: &K) -> R<V> {
        let out = self.proxy.raw(p::GET_ITEM, &codec::to_bytes(key))?;
        Ok(codec::from_bytes(&out)?)
    }

    /// `d[key] = value`.
    pub fn set(&self, key: &K, value: &V) -> R<()> {
        self.proxy.call_typed(p::SET, &(codec::to_bytes(key), codec::to_bytes(value)))
    }

    /// `del d[key]` (a missing key is an [`ErrorKind::Key`](crate::manager::ErrorKind::Key)
    /// error).
    pub fn del(&self, key: &K) -> R<()> {
        self.proxy.raw(p::DEL, &codec::to_bytes(key)).map(drop)
    }

    /// `d.pop(key)`: removes and returns the value (a missing key is an
    /// [`ErrorKind::Key`](crate::manager::ErrorKind::Key) error).
    pub fn pop(&self, key: &K) -> R<V> {
        let out = self.proxy.raw(p::POP, &codec::to_bytes(key))?;
        Ok(codec::from_bytes(&out)?)
    }

    /// `d.setdefault(key, value)`: the value at `key`, inserting `value` first if there is none.
    pub fn set_default(&self, key: &K, value: &V) -> R<V> {
        let out = self.proxy.raw(
            p::SET_DEFAULT,
            &codec::to_bytes(&(codec::to_bytes(key), codec::to_bytes(value))),
        )?;
        Ok(codec::from_bytes(&out)?)
    }

    /// `key in d`.
    pub fn contains_key(&self, key: &K) -> R<bool> {
        let out = self.proxy.raw(p::CONTAINS, &codec::to_bytes(key))?;
        Ok(codec::from_bytes(&out)?)
    }

    /// `len(d)`.
    pub fn len(&self) -> R<usize> {
        self.proxy.call_typed::<_, u64>(p::LEN, &()).map(|n| n as usize)
    }

    /// `len(d) == 0`.
    pub fn is_empty(&self) -> R<bool> {
        self.len().map(|n| n == 0)
    }

    /// `d.clear()`.
    pub fn clear(&self) -> R<()> {
        self.proxy.call_typed(p::CLEAR, &())
    }

    /// `d.update(items)`, in one call.
    pub fn update<'a>(&self, items: impl IntoIterator<Item = (&'a K, &'a V)>) -> R<()>
    where
        K: 'a,
        V: 'a,
    {
        let items: Vec<(Vec<u8>, Vec<u8>)> =
            items.into_iter().map(|(k, v)| (codec::to_bytes(k), codec::to_bytes(v))).collect();
        self.proxy.call_typed(p::EXTEND, &items)
    }

    /// The values, in an unspecified order.
    pub fn values(&self) -> R<Vec<V>> {
        decode_items(self.proxy.call_typed(p::VALUES, &())?)
    }
}

impl<K: Encode + Decode, V: Encode + Decode> DictProxy<K, V> {
    /// The keys, in an unspecified order.
    pub fn keys(&self) -> R<Vec<K>> {
        decode_items(self.proxy.call_typed(p::KEYS, &())?)
    }

    /// The items, in an unspecified order (`dict(d)` in Python makes a copy the same way).
    pub fn items(&self) -> R<Vec<(K, V)>> {
        let raw: Vec<(Vec<u8>, Vec<u8>)> = self.proxy.call_typed(p::ITEMS, &())?;
        raw.iter().map(|(k, v)| Ok((codec::from_bytes(k)?, codec::from_bytes(v)?))).collect()
    }
}

impl<K: Encode> DictProxy<K, i64> {
    /// Adds `delta` to the value at `key` (0 if there is none) in the server, atomically, and
    /// returns the new value: `d[key] += delta` without losing concurrent updates (Python needs
    /// a manager `Lock` around the read and the write).
    ///
    /// # Errors
    /// [`ErrorKind::Type`](crate::manager::ErrorKind::Type) if the stored value is not an
    /// `i64`.
    pub fn incr(&self, key: &K, delta: i64) -> R<i64> {
        self.proxy.call_typed(p::INCR, &(codec::to_bytes(key), delta))
    }
}

/// A proxy of a `list` in the manager (Python's `manager.list()`, a `ListProxy`).
///
/// Indices are Python's: negative ones count from the end, and one out of range is an
/// [`ErrorKind::Index`](crate::manager::ErrorKind::Index) error (`l[20]`: "list index out of
/// range").
pub struct ListProxy<T> {
    proxy: Proxy,
    _t: PhantomData<fn() -> T>,
}

proxy_common!(ListProxy<T>, "list", [T], |items: &[T]| codec::to_bytes(&encode_items(items)));

impl<T: Encode + Decode> ListProxy<T> {
    /// `l[i]`.
    pub fn get(&self, i: isize) -> R<T> {
        let out = self.proxy.raw(p::GET, &codec::to_bytes(&(i as i64)))?;
        Ok(codec::from_bytes(&out)?)
    }

    /// `l[i] = value`.
    pub fn set(&self, i: isize, value: &T) -> R<()> {
        self.proxy.call_typed(p::SET, &(i as i64, codec::to_bytes(value)))
    }

    /// `l.append(value)`.
    pub fn append(&self, value: &T) -> R<()> {
        self.proxy.raw(p::APPEND, &codec::to_bytes(value)).map(drop)
    }

    /// `l.insert(i, value)` (an index out of range inserts at the end it is beyond, as in
    /// Python).
    pub fn insert(&self, i: isize, value: &T) -> R<()> {
        self.proxy.call_typed(p::INSERT, &(i as i64, codec::to_bytes(value)))
    }

    /// `l.extend(items)`, in one call.
    pub fn extend<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> R<()>
    where
        T: 'a,
    {
        self.proxy.call_typed(p::EXTEND, &encode_items(items))
    }

    /// `l.pop()`: removes and returns the last item.
    pub fn pop(&self) -> R<T> {
        let out = self.proxy.raw(p::POP, &codec::to_bytes(&None::<i64>))?;
        Ok(codec::from_bytes(&out)?)
    }

    /// `l.pop(i)`.
    pub fn pop_at(&self, i: isize) -> R<T> {
        let out = self.proxy.raw(p::POP, &codec::to_bytes(&Some(i as i64)))?;
        Ok(codec::from_bytes(&out)?)
    }

    /// `del l[i]`.
    pub fn del(&self, i: isize) -> R<()> {
        self.proxy.call_typed(p::DEL, &(i as i64))
    }

    /// `len(l)`.
    pub fn len(&self) -> R<usize> {
        self.proxy.call_typed::<_, u64>(p::LEN, &()).map(|n| n as usize)
    }

    /// `len(l) == 0`.
    pub fn is_empty(&self) -> R<bool> {
        self.len().map(|n| n == 0)
    }

    /// `l.clear()`.
    pub fn clear(&self) -> R<()> {
        self.proxy.call_typed(p::CLEAR, &())
    }

    /// `list(l)`: a copy of every item.
    pub fn to_vec(&self) -> R<Vec<T>> {
        decode_items(self.proxy.call_typed(p::TO_VEC, &())?)
    }
}

/// A proxy of a `Namespace` in the manager (Python's `manager.Namespace()`): named attributes
/// of any type, read with [`get`](Self::get) as the type they were set with.
#[derive(Clone)]
pub struct NamespaceProxy {
    proxy: Proxy,
}

impl fmt::Debug for NamespaceProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NamespaceProxy").field(&self.proxy).finish()
    }
}

impl Managed for NamespaceProxy {
    const TYPEID: &'static str = "Namespace";
    type Init = ();
    fn init_bytes(_: &()) -> Vec<u8> {
        Vec::new()
    }
    fn from_proxy(proxy: Proxy) -> Self {
        NamespaceProxy { proxy }
    }
    fn proxy(&self) -> &Proxy {
        &self.proxy
    }
}

impl NamespaceProxy {
    /// `ns.name`: the attribute, decoded as a `T`; a missing one is an
    /// [`ErrorKind::Attribute`](crate::manager::ErrorKind::Attribute) error.
    pub fn get<T: Decode>(&self, name: &str) -> R<T> {
        let out = self.proxy.raw(p::GET, &codec::to_bytes(name))?;
        Ok(codec::from_bytes(&out)?)
    }

    /// `ns.name = value`.
    pub fn set<T: Encode + ?Sized>(&self, name: &str, value: &T) -> R<()> {
        self.proxy.call_typed(p::SET, &(name, codec::to_bytes(value)))
    }

    /// `del ns.name`.
    pub fn del(&self, name: &str) -> R<()> {
        self.proxy.raw(p::DEL, &codec::to_bytes(name)).map(drop)
    }

    /// `hasattr(ns, name)`.
    pub fn contains(&self, name: &str) -> R<bool> {
        self.proxy.call_typed(p::CONTAINS, name)
    }

    /// The attributes' names, sorted.
    pub fn names(&self) -> R<Vec<String>> {
        self.proxy.call_typed(p::KEYS, &())
    }
}

/// A proxy of a `Value` in the manager (Python's `manager.Value(typecode, value)`, a
/// `ValueProxy`): one value of type `T`.
pub struct ValueProxy<T> {
    proxy: Proxy,
    _t: PhantomData<fn() -> T>,
}

proxy_common!(ValueProxy<T>, "Value", T, |v: &T| codec::to_bytes(v));

impl<T: Encode + Decode> ValueProxy<T> {
    /// `v.value`.
    pub fn get(&self) -> R<T> {
        let out = self.proxy.raw(p::GET, &[])?;
        Ok(codec::from_bytes(&out)?)
    }

    /// `v.value = value`.
    pub fn set(&self, value: &T) -> R<()> {
        self.proxy.raw(p::SET, &codec::to_bytes(value)).map(drop)
    }
}

impl ValueProxy<i64> {
    /// Adds `delta` in the server, atomically, and returns the new value.
    pub fn incr(&self, delta: i64) -> R<i64> {
        self.proxy.call_typed(p::INCR, &delta)
    }
}

/// A proxy of an `Array` in the manager (Python's `manager.Array(typecode, sequence)`, an
/// `ArrayProxy`): a fixed number of `T`s, indexed as a list is.
pub struct ArrayProxy<T> {
    proxy: Proxy,
    _t: PhantomData<fn() -> T>,
}

proxy_common!(ArrayProxy<T>, "Array", [T], |items: &[T]| codec::to_bytes(&encode_items(items)));

// Indexing mirrors `ListProxy`'s (Python's `ArrayProxy` and `ListProxy` share `__getitem__` and
// `__setitem__`); each method is one request, and the server's list code serves both.
impl<T: Encode + Decode> ArrayProxy<T> {
    /// `a[i]` (negative counts from the end; out of range is an
    /// [`ErrorKind::Index`](crate::manager::ErrorKind::Index) error).
    pub fn get(&self, i: isize) -> R<T> {
        let out = self.proxy.raw(p::GET, &codec::to_bytes(&(i as i64)))?;
        Ok(codec::from_bytes(&out)?)
    }

    /// `a[i] = value`.
    pub fn set(&self, i: isize, value: &T) -> R<()> {
        self.proxy.call_typed(p::SET, &(i as i64, codec::to_bytes(value)))
    }

    /// `len(a)`.
    pub fn len(&self) -> R<usize> {
        self.proxy.call_typed::<_, u64>(p::LEN, &()).map(|n| n as usize)
    }

    /// `len(a) == 0`.
    pub fn is_empty(&self) -> R<bool> {
        self.len().map(|n| n == 0)
    }

    /// `list(a)`.
    pub fn to_vec(&self) -> R<Vec<T>> {
        decode_items(self.proxy.call_typed(p::TO_VEC, &())?)
    }
}
