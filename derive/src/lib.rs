//! `#[derive(Encode, Decode)]` for the message codec of [multiproc].
//!
//! Do not depend on this crate directly: enable multiproc's `derive` feature, and the derive
//! macros are re-exported next to the traits of the same names, `multiproc::Encode` and
//! `multiproc::Decode` (the way serde re-exports its derives):
//!
//! ```toml
//! [dependencies]
//! multiproc = { version = "0.1", features = ["derive"] }
//! ```
//!
//! ```ignore
//! use multiproc::{Decode, Encode, codec};
//!
//! #[derive(Debug, PartialEq, Encode, Decode)]
//! struct Job {
//!     id: u64,
//!     name: String,
//!     args: Vec<i32>,
//! }
//!
//! #[derive(Debug, PartialEq, Encode, Decode)]
//! enum Reply<T> {
//!     Done(T),
//!     Failed { job: u64, reason: String },
//!     Cancelled,
//! }
//!
//! let job = Job { id: 7, name: "résumé".into(), args: vec![1, -2, 3] };
//! // A struct encodes exactly like the tuple of its fields.
//! assert_eq!(codec::to_bytes(&job), codec::to_bytes(&(7u64, "résumé", vec![1i32, -2, 3])));
//! assert_eq!(codec::from_bytes::<Job>(&codec::to_bytes(&job)).unwrap(), job);
//!
//! // An enum: the variant index (one byte here), then the variant's fields.
//! let reply: Reply<i64> = Reply::Failed { job: 7, reason: "timeout".into() };
//! assert_eq!(codec::to_bytes(&reply), codec::to_bytes(&(1u8, 7u64, "timeout")));
//! assert_eq!(codec::from_bytes::<Reply<i64>>(&codec::to_bytes(&reply)).unwrap(), reply);
//! ```
//!
//! (The example is marked `ignore` here because this crate cannot depend on multiproc; the same
//! code is compiled and run in multiproc's `tests/derive.rs`, and the
//! [codec module docs](https://docs.rs/multiproc/latest/multiproc/codec/index.html#deriving)
//! have a tested copy.)
//!
//! # Wire format of a derived type
//!
//! - **Structs** (named, tuple or unit): each field in declaration order, nothing else: exactly
//!   the bytes of the tuple of the fields (a unit struct, like `()`, is no bytes at all).
//! - **Enums**: the variant index (its position in the declaration, counting from 0; explicit
//!   discriminants `A = 5` are ignored), then that variant's fields as for a struct. An index
//!   below 255 is one byte; an index of 255 or more (enums with more than 255 variants) is the
//!   byte `255` then the index as a little-endian `u32`. This is the same tag as `Option` and
//!   `Result` (a derived `enum Maybe<T> { Nothing, Just(T) }` encodes exactly like an
//!   `Option<T>`) and as the `serde` feature's `Serde<T>` for a serde-derived enum, so a type
//!   may move between `#[derive(serde::Serialize)]` + `Serde<T>` and these derives without
//!   changing its bytes.
//!
//! Renaming a field or a variant keeps the format; reordering, adding or removing one changes
//! it, so both ends of a connection must be built from the same definition.
//!
//! # Decoding
//!
//! The generated `decode` reads through the [`Decoder`] it is given, so the codec's limits on
//! hostile input apply unchanged: truncated input is `DecodeError::Truncated`, an unknown
//! one-byte variant tag is `DecodeError::InvalidTag { tag, ty }` (`ty` is the enum's name), an
//! unknown or non-canonical 5-byte index is `DecodeError::Invalid`, and nothing panics. Like
//! tuples, `Option` and `Result`, a derived type adds no nesting level of its own; a recursive
//! type must go through a `Box`, `Vec`, ... , which counts one (so `MAX_DEPTH` bounds it).
//!
//! `MIN_ENCODED_LEN` is the sum of the fields' (for an enum: one tag byte plus the smallest
//! variant's), so a hostile `Vec<YourType>` length is still rejected before any allocation. A
//! field whose type is a `Box`, `Rc` or `Arc`, or names `Self` or the type being derived, counts
//! 0 there instead: that is what lets a recursive type (`enum List { Nil, Cons(u32,
//! Box<List>) }`) compile, since its minimum would otherwise be defined in terms of itself.
//! (Recursion hidden behind a type alias, `type Link = Box<List>`, is not seen, and using
//! `Vec<List>` then fails to compile with a "cycle" error: spell the `Box` out in the field.)
//!
//! # Generics and attributes
//!
//! Each type parameter `T` gets a `T: Encode` bound on the `Encode` impl and a `T: Decode`
//! bound on the `Decode` impl, even one used only in a `PhantomData<T>` (write the impls by hand
//! to avoid that); lifetimes, const generics and `where` clauses pass through. A
//! type that borrows (`struct Msg<'a> { text: &'a str }`) can derive `Encode` (it encodes like
//! its owned twin, which the receiver decodes).
//!
//! The generated code names the crate as `::multiproc`. If it is renamed or re-exported, say
//! where it is with `#[multiproc(crate = "path::to::multiproc")]` on the type.
//!
//! [multiproc]: https://docs.rs/multiproc
//! [`Decoder`]: https://docs.rs/multiproc/latest/multiproc/codec/struct.Decoder.html

use proc_macro::TokenStream;
use proc_macro2::{Literal, Span, TokenStream as TokenStream2, TokenTree};
use quote::{ToTokens, quote};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, Member, Path, Type, parse_macro_input, parse_quote};

/// Derives `multiproc::codec::Encode`: the fields in declaration order; for an enum, the
/// variant index first. See the [crate docs](crate) for the exact format.
#[proc_macro_derive(Encode, attributes(multiproc))]
pub fn derive_encode(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand_encode(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Derives `multiproc::codec::Decode`: reads what the derived `Encode` writes, with
/// `MIN_ENCODED_LEN` the sum of the fields'. See the [crate docs](crate) for the exact format.
#[proc_macro_derive(Decode, attributes(multiproc))]
pub fn derive_decode(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand_decode(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Variant indices below this are one byte; this byte announces a `u32` index after it.
const LONG_TAG: u8 = 255;

/// A local variable of the generated code: `__` and `name`, at the macro's own (mixed-site)
/// hygiene. Mixed-site hygiene keeps the user's local variables apart, but items (constants,
/// unit structs) still resolve at the call site, and a pattern that names one is not a binding:
/// the prefix keeps a `const tag: u8` of the user's from turning `tag => ...` into a constant
/// pattern.
fn local(name: &str) -> Ident {
    Ident::new(&format!("__{name}"), Span::mixed_site())
}

/// The path to the multiproc crate: `::multiproc`, or what `#[multiproc(crate = "...")]` says.
/// Also rejects the attribute anywhere it means nothing (fields, variants), rather than
/// silently ignoring it.
fn crate_path(input: &DeriveInput) -> syn::Result<Path> {
    let mut path: Option<Path> = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("multiproc")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                if path.is_some() {
                    return Err(meta.error("duplicate `crate` in #[multiproc(...)]"));
                }
                let lit: syn::LitStr = meta.value()?.parse()?;
                path = Some(lit.parse()?);
                Ok(())
            } else {
                Err(meta
                    .error("unknown #[multiproc(...)] option; the only one is `crate = \"...\"`"))
            }
        })?;
    }
    let misplaced = |attrs: &[syn::Attribute]| -> syn::Result<()> {
        match attrs.iter().find(|a| a.path().is_ident("multiproc")) {
            Some(attr) => Err(syn::Error::new_spanned(
                attr,
                "#[multiproc(...)] goes on the type itself, not on a field or a variant",
            )),
            None => Ok(()),
        }
    };
    match &input.data {
        Data::Struct(s) => s.fields.iter().try_for_each(|f| misplaced(&f.attrs))?,
        Data::Enum(e) => {
            for v in &e.variants {
                misplaced(&v.attrs)?;
                v.fields.iter().try_for_each(|f| misplaced(&f.attrs))?;
            }
        }
        Data::Union(_) => {}
    }
    Ok(path.unwrap_or_else(|| parse_quote!(::multiproc)))
}

/// `input`'s generics with `bound` added to every type parameter.
fn bounded_generics(input: &DeriveInput, bound: &Path) -> syn::Generics {
    let mut generics = input.generics.clone();
    let params: Vec<Ident> = generics.type_params().map(|p| p.ident.clone()).collect();
    let where_clause = generics.make_where_clause();
    for ident in params {
        where_clause.predicates.push(parse_quote!(#ident: #bound));
    }
    generics
}

fn union_error(input: &DeriveInput) -> syn::Error {
    syn::Error::new_spanned(
        &input.ident,
        "Encode and Decode can be derived for structs and enums, not unions",
    )
}

/// The members (`self.x` / `self.0`) of `fields`, in declaration order.
fn members(fields: &Fields) -> Vec<Member> {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| match &f.ident {
            Some(ident) => Member::Named(ident.clone()),
            None => Member::Unnamed(syn::Index { index: i as u32, span: f.span() }),
        })
        .collect()
}

/// A pattern binding every field of a variant to `__f0`, `__f1`, ... (hygienic), and those
/// bindings in order.
fn bind_fields(fields: &Fields) -> (TokenStream2, Vec<Ident>) {
    let bindings: Vec<Ident> = (0..fields.len()).map(|i| local(&format!("f{i}"))).collect();
    let pattern = match fields {
        Fields::Named(_) => {
            let names = fields.iter().map(|f| f.ident.as_ref().expect("named field"));
            quote!({ #( #names: #bindings ),* })
        }
        Fields::Unnamed(_) => quote!(( #( #bindings ),* )),
        Fields::Unit => quote!(),
    };
    (pattern, bindings)
}

/// The statements that write the tag of variant `index`.
fn encode_tag(krate: &Path, index: usize, out: &Ident) -> TokenStream2 {
    match u8::try_from(index) {
        Ok(short) if short != LONG_TAG => {
            let short = Literal::u8_suffixed(short);
            quote!(#krate::codec::Encode::encode(&#short, #out);)
        }
        _ => {
            let long = LONG_TAG;
            let index =
                Literal::u32_suffixed(u32::try_from(index).expect("fewer than 2^32 variants"));
            quote! {
                #krate::codec::Encode::encode(&#long, #out);
                #krate::codec::Encode::encode(&#index, #out);
            }
        }
    }
}

fn expand_encode(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let krate = crate_path(input)?;
    let out = local("out");
    let body = match &input.data {
        Data::Struct(s) => {
            let members = members(&s.fields);
            if members.is_empty() {
                quote!(let _ = #out;)
            } else {
                quote!(#( #krate::codec::Encode::encode(&self.#members, #out); )*)
            }
        }
        Data::Enum(e) if e.variants.is_empty() => quote! {
            let _ = #out;
            match *self {}
        },
        Data::Enum(e) => {
            let arms = e.variants.iter().enumerate().map(|(index, v)| {
                let ident = &v.ident;
                let (pattern, bindings) = bind_fields(&v.fields);
                let tag = encode_tag(&krate, index, &out);
                quote! {
                    Self::#ident #pattern => {
                        #tag
                        #( #krate::codec::Encode::encode(#bindings, #out); )*
                    }
                }
            });
            quote!(match self { #( #arms )* })
        }
        Data::Union(_) => return Err(union_error(input)),
    };
    let bound: Path = parse_quote!(#krate::codec::Encode);
    let generics = bounded_generics(input, &bound);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let name = &input.ident;
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::codec::Encode for #name #ty_generics #where_clause {
            #[inline]
            fn encode(
                &self,
                #out: &mut ::std::vec::Vec<::core::primitive::u8>,
            ) {
                #body
            }
        }
    })
}

/// Whether `tokens` mention the identifier `Self` or `name` anywhere.
fn mentions(tokens: TokenStream2, name: &Ident) -> bool {
    tokens.into_iter().any(|t| match t {
        TokenTree::Ident(i) => i == "Self" || i == *name,
        TokenTree::Group(g) => mentions(g.stream(), name),
        _ => false,
    })
}

/// Whether a field of type `ty` must count 0 towards `MIN_ENCODED_LEN` so that a recursive
/// type does not define its minimum in terms of itself (see the crate docs).
fn may_recurse(ty: &Type, name: &Ident) -> bool {
    let mut ty = ty;
    loop {
        match ty {
            Type::Paren(p) => ty = &p.elem,
            Type::Group(g) => ty = &g.elem,
            _ => break,
        }
    }
    let pointer =
        match ty {
            Type::Path(p) if p.qself.is_none() => p.path.segments.last().is_some_and(|last| {
                last.ident == "Box" || last.ident == "Rc" || last.ident == "Arc"
            }),
            _ => false,
        };
    pointer || mentions(ty.to_token_stream(), name)
}

/// `MIN_ENCODED_LEN` of the tuple of `fields`, as a constant expression.
fn min_len(krate: &Path, fields: &Fields, name: &Ident) -> TokenStream2 {
    let terms = fields.iter().filter(|f| !may_recurse(&f.ty, name)).map(|f| {
        let ty = &f.ty;
        quote!(.saturating_add(<#ty as #krate::codec::Decode>::MIN_ENCODED_LEN))
    });
    quote!(0usize #( #terms )*)
}

/// The expression that decodes `fields` into the constructor `ctor` (`Self`, `Self::V`).
fn construct(krate: &Path, ctor: TokenStream2, fields: &Fields, input: &Ident) -> TokenStream2 {
    let decode = quote!(#krate::codec::Decode::decode(#input)?);
    match fields {
        Fields::Named(_) => {
            let names = fields.iter().map(|f| f.ident.as_ref().expect("named field"));
            quote!(#ctor { #( #names: #decode ),* })
        }
        Fields::Unnamed(_) => {
            let decodes = fields.iter().map(|_| &decode);
            quote!(#ctor( #( #decodes ),* ))
        }
        Fields::Unit => ctor,
    }
}

fn expand_decode(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let krate = crate_path(input)?;
    let name = &input.ident;
    let name_str = name.to_string();
    let name_str = name_str.strip_prefix("r#").unwrap_or(&name_str);
    let de = local("input");
    let (min_len, body) = match &input.data {
        Data::Struct(s) => {
            let value = construct(&krate, quote!(Self), &s.fields, &de);
            (
                min_len(&krate, &s.fields, name),
                if s.fields.is_empty() {
                    quote!(let _ = #de; ::core::result::Result::Ok(#value))
                } else {
                    quote!(::core::result::Result::Ok(#value))
                },
            )
        }
        Data::Enum(e) => {
            let tag = local("tag");
            let index = local("index");
            // One tag byte, then the smallest variant.
            let smallest = local("smallest");
            let len = local("len");
            let variant_mins = e.variants.iter().map(|v| min_len(&krate, &v.fields, name));
            let min_len = quote! {
                1usize.saturating_add({
                    let mut #smallest = ::core::primitive::usize::MAX;
                    #( {
                        let #len = #variant_mins;
                        if #len < #smallest { #smallest = #len; }
                    } )*
                    if #smallest == ::core::primitive::usize::MAX { 0 } else { #smallest }
                })
            };
            let long = e.variants.len() > usize::from(LONG_TAG);
            let arms = e.variants.iter().enumerate().map(|(i, v)| {
                let ident = &v.ident;
                let value = construct(&krate, quote!(Self::#ident), &v.fields, &de);
                let i = if long {
                    Literal::u32_suffixed(i as u32)
                } else {
                    Literal::u8_suffixed(i as u8)
                };
                quote!(#i => ::core::result::Result::Ok(#value),)
            });
            let body = if long {
                let bad_form = format!(
                    "variant index {{}} of enum {name_str} in the 5-byte form, which only indices \
                     of 255 or more use"
                );
                let long_u32 = u32::from(LONG_TAG);
                let bad_index = format!("invalid variant index {{}} for enum {name_str}");
                quote! {
                    let #tag: ::core::primitive::u8 = #krate::codec::Decode::decode(#de)?;
                    let #index: ::core::primitive::u32 = if #tag == #LONG_TAG {
                        let #index: ::core::primitive::u32 = #krate::codec::Decode::decode(#de)?;
                        if #index < #long_u32 {
                            return ::core::result::Result::Err(
                                #krate::codec::DecodeError::Invalid(::std::format!(#bad_form, #index)),
                            );
                        }
                        #index
                    } else {
                        ::core::primitive::u32::from(#tag)
                    };
                    match #index {
                        #( #arms )*
                        #index => ::core::result::Result::Err(
                            #krate::codec::DecodeError::Invalid(::std::format!(#bad_index, #index)),
                        ),
                    }
                }
            } else {
                quote! {
                    let #tag: ::core::primitive::u8 = #krate::codec::Decode::decode(#de)?;
                    match #tag {
                        #( #arms )*
                        #tag => ::core::result::Result::Err(
                            #krate::codec::DecodeError::InvalidTag { tag: #tag, ty: #name_str },
                        ),
                    }
                }
            };
            (min_len, body)
        }
        Data::Union(_) => return Err(union_error(input)),
    };
    let bound: Path = parse_quote!(#krate::codec::Decode);
    let generics = bounded_generics(input, &bound);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::codec::Decode for #name #ty_generics #where_clause {
            const MIN_ENCODED_LEN: ::core::primitive::usize = #min_len;

            #[inline]
            fn decode(
                #de: &mut #krate::codec::Decoder<'_>,
            ) -> ::core::result::Result<Self, #krate::codec::DecodeError> {
                #body
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(f: fn(&DeriveInput) -> syn::Result<TokenStream2>, src: TokenStream2) -> String {
        let input: DeriveInput = syn::parse2(src).expect("parses");
        match f(&input) {
            Ok(tokens) => tokens.to_string(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn unions_are_rejected() {
        let src = quote!(
            union U {
                a: u32,
            }
        );
        assert!(expand(expand_encode, src.clone()).starts_with("error: "));
        assert!(expand(expand_decode, src).contains("not unions"));
    }

    #[test]
    fn crate_attribute() {
        let src = quote!(
            #[multiproc(crate = "my::mp")]
            struct S(u8);
        );
        let out = expand(expand_encode, src);
        assert!(out.contains("my :: mp :: codec :: Encode"), "{out}");
        assert!(!out.contains(":: multiproc"), "{out}");

        let bad = quote!(
            #[multiproc(krate = "x")]
            struct S;
        );
        assert!(expand(expand_decode, bad).contains("unknown #[multiproc"));

        let misplaced = quote!(
            struct S {
                #[multiproc(crate = "x")]
                a: u8,
            }
        );
        assert!(expand(expand_encode, misplaced).contains("goes on the type itself"));
    }

    #[test]
    fn recursion_guard() {
        let name: Ident = parse_quote!(List);
        assert!(may_recurse(&parse_quote!(Box<List>), &name));
        assert!(may_recurse(&parse_quote!(std::rc::Rc<u8>), &name));
        assert!(may_recurse(&parse_quote!(Option<(u8, Self)>), &name));
        assert!(may_recurse(&parse_quote!(Vec<List>), &name));
        assert!(!may_recurse(&parse_quote!(Vec<u8>), &name));
        assert!(!may_recurse(&parse_quote!((u64, [u8; 4])), &name));
    }

    #[test]
    fn long_tags_only_past_254_variants() {
        let out = expand(
            expand_decode,
            quote!(
                enum E {
                    A,
                    B,
                }
            ),
        );
        assert!(out.contains("InvalidTag"), "{out}");
        assert!(!out.contains("Invalid ("), "{out}");
    }
}
