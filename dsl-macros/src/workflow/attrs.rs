//! The attributes `workflow!` reads: `#[durable]` on the workflow, `#[concurrency = N]`
//! on a `for`.

use proc_macro2::Ident;
use syn::parse::ParseStream;
use syn::{Attribute, Expr, Token};

use crate::errors::Errors;

/// Takes `#[durable]` / `#[durable(version = N)]` out of the workflow's attributes.
pub(super) fn durable(attrs: &mut Vec<Attribute>, errors: &mut Errors) -> Option<u32> {
    let at = attrs
        .iter()
        .position(|attr| attr.path().is_ident("durable"))?;
    let attr = attrs.remove(at);
    match &attr.meta {
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
    }
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
