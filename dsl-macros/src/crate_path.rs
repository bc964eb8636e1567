//! `crate = path`: the path both macros' expansions name Aqueduct by, for a crate that
//! renamed the dependency or reaches Aqueduct through a re-export.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote_spanned};
use syn::{Expr, ExprLit, ExprPath, Lit, Meta, Path};

use crate::errors::Errors;

/// The path of Aqueduct as the expansion names it: `::aqueduct` unless `crate = …`
/// gives another.
#[derive(Default)]
pub(crate) struct CratePath(Option<Path>);

impl CratePath {
    /// The value of `crate = …`, a path (`flow`, `::flow`, `my_lib::aqueduct`,
    /// `$crate::aqueduct`) or a string holding one (`"flow"`, as serde and tokio take it);
    /// on a mistake, reports it to `errors` and returns `None`.
    pub(crate) fn parse(meta: &Meta, value: Option<&Expr>, errors: &mut Errors) -> Option<Self> {
        // A `$p:path` fragment of a `macro_rules!` arrives in an invisible group.
        let mut value = value;
        while let Some(Expr::Group(group)) = value {
            value = Some(&group.expr);
        }
        let path = match value {
            Some(Expr::Path(ExprPath {
                qself: None, path, ..
            })) if path.segments.iter().all(|s| s.arguments.is_none()) => path.clone(),
            Some(Expr::Lit(ExprLit {
                lit: Lit::Str(text),
                ..
            })) => match text.parse_with(Path::parse_mod_style) {
                Ok(path) => path,
                Err(_) => {
                    errors.at(
                        text,
                        format!(
                            "`{}` is not a path: write the path Aqueduct has in this crate, \
                             e.g. `crate = flow` or `crate = \"flow\"`",
                            text.to_token_stream()
                        ),
                    );
                    return None;
                }
            },
            Some(other) => {
                errors.at(
                    other,
                    "`crate` takes the path Aqueduct has in this crate: write e.g. `crate = flow` \
                     (the dependency renamed `flow`) or `crate = my_lib::aqueduct` (a re-export)",
                );
                return None;
            }
            None => {
                errors.at(
                    meta,
                    "`crate` needs a value: write e.g. `crate = flow`, the path Aqueduct has \
                     in this crate",
                );
                return None;
            }
        };
        Some(Self(Some(path)))
    }

    /// `<crate>::__private`, where everything the expansions call lives.
    pub(crate) fn private(&self) -> TokenStream {
        self.private_at(Span::call_site())
    }

    /// [`private`](Self::private) with its tokens (the default's, or `::__private` after
    /// the user's path, which keeps its own) spanned at `span`.
    pub(crate) fn private_at(&self, span: Span) -> TokenStream {
        match &self.0 {
            None => quote_spanned!(span=> ::aqueduct::__private),
            Some(path) => quote_spanned!(span=> #path::__private),
        }
    }

    /// The path as a generated doc comment's intra-doc links write it; `None` when a
    /// link could not resolve (`$crate`, which is only a path inside a `macro_rules!`).
    pub(crate) fn doc_link(&self) -> Option<String> {
        match &self.0 {
            None => Some("::aqueduct".to_owned()),
            Some(path) => {
                let text = path.to_token_stream().to_string().replace(' ', "");
                (!text.contains('$')).then_some(text)
            }
        }
    }
}
