//! The attributes `workflow!` reads: `#[durable]` and `#[aqueduct(crate = path)]` on the
//! workflow, `#[concurrency = N]` on a `for`.

use proc_macro2::{Ident, Span};
use quote::ToTokens;
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Meta, Token};

use crate::crate_path::CratePath;
use crate::errors::{Errors, closest};

/// How `#[aqueduct(…)]` is written.
const AQUEDUCT_FORM: &str = "`#[aqueduct(crate = path)]`, e.g. `#[aqueduct(crate = flow)]`";

/// Takes `#[durable]` / `#[durable(version = N)]` out of the workflow's attributes:
/// the version, and where the attribute is.
pub(super) fn durable(attrs: &mut Vec<Attribute>, errors: &mut Errors) -> Option<(u32, Span)> {
    let at = attrs
        .iter()
        .position(|attr| attr.path().is_ident("durable"))?;
    let attr = attrs.remove(at);
    let span = attr.path().span();
    let version = match &attr.meta {
        syn::Meta::Path(_) => Some(1),
        syn::Meta::List(list) => {
            let parsed = list.parse_args_with(|input: ParseStream<'_>| {
                let key: Ident = input.parse()?;
                input.parse::<Token![=]>()?;
                let value: syn::LitInt = input.parse()?;
                if key != "version" {
                    return Err(syn::Error::new(
                        key.span(),
                        "the one `durable` option is `version = N`",
                    ));
                }
                value.base10_parse::<u32>()
            });
            match parsed {
                Ok(version) => Some(version),
                Err(error) => {
                    errors.push(syn::Error::new(
                        error.span(),
                        format!("{error}: write `#[durable]` or `#[durable(version = 2)]`"),
                    ));
                    None
                }
            }
        }
        syn::Meta::NameValue(pair) => {
            errors.at(pair, "write `#[durable]` or `#[durable(version = 2)]`");
            None
        }
    };
    version.map(|version| (version, span))
}

/// Takes every `#[aqueduct(crate = path)]` out of the workflow's attributes: the path
/// the expansion names Aqueduct by, `::aqueduct` when there is none.
pub(super) fn crate_path(attrs: &mut Vec<Attribute>, errors: &mut Errors) -> CratePath {
    let (ours, others) = attrs
        .drain(..)
        .partition::<Vec<_>, _>(|attr| attr.path().is_ident("aqueduct"));
    *attrs = others;
    let mut crate_path = CratePath::default();
    let mut seen = false;
    for attr in &ours {
        let Meta::List(list) = &attr.meta else {
            errors.at(attr, format!("write {AQUEDUCT_FORM}"));
            continue;
        };
        let metas = match list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
            Ok(metas) => metas,
            Err(error) => {
                errors.push(syn::Error::new(
                    error.span(),
                    format!("malformed `aqueduct` options: write {AQUEDUCT_FORM}"),
                ));
                continue;
            }
        };
        for meta in &metas {
            let key = meta.path();
            if !key.is_ident("crate") {
                let hint = key
                    .get_ident()
                    .and_then(|key| closest(&key.to_string(), ["crate"]))
                    .map(|close| format!("did you mean `{close}`? "))
                    .unwrap_or_default();
                errors.at(
                    key,
                    format!(
                        "unknown workflow option `{}`: {hint}the one `aqueduct` option is \
                         `crate = path`, e.g. `#[aqueduct(crate = flow)]`",
                        key.to_token_stream()
                    ),
                );
                continue;
            }
            if seen {
                errors.at(key, "`crate` is given twice");
                continue;
            }
            seen = true;
            let value = match meta {
                Meta::NameValue(pair) => Some(&pair.value),
                Meta::Path(_) => None,
                Meta::List(list) => {
                    errors.at(list, "write `crate = value`, not `crate(…)`");
                    continue;
                }
            };
            if let Some(path) = CratePath::parse(meta, value, errors) {
                crate_path = path;
            }
        }
    }
    crate_path
}

/// `#[concurrency = N]` on a workflow `for`, the one attribute it takes.
pub(super) fn loop_cap(attrs: &[Attribute], errors: &mut Errors) -> Option<u32> {
    let mut cap = None;
    for attr in attrs {
        let syn::Meta::NameValue(pair) = &attr.meta else {
            errors.at(
                attr,
                "a workflow `for` takes one attribute, `#[concurrency = N]`",
            );
            continue;
        };
        if !pair.path.is_ident("concurrency") {
            errors.at(
                &pair.path,
                "a workflow `for` takes one attribute, `#[concurrency = N]`",
            );
            continue;
        }
        let value = &pair.value;
        match value {
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Int(int),
                ..
            }) => match int.base10_parse::<u32>() {
                Ok(n) if n > 0 => cap = Some(n),
                _ => errors.at(
                    int,
                    "`concurrency` is a whole number from 1: how many items may run at once",
                ),
            },
            other => errors.at(
                other,
                "`concurrency` is a whole number from 1: write e.g. `#[concurrency = 4]`",
            ),
        }
    }
    cap
}
