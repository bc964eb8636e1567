//! Where expansions' tokens are reported.

use proc_macro2::{Group, Span, TokenStream, TokenTree};

/// `tokens`, every one located at `at` (groups too; each keeps its hygiene): an
/// expression or type rustc reports as a whole at one token of the user's.
pub(crate) fn respan(tokens: TokenStream, at: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut inner = Group::new(group.delimiter(), respan(group.stream(), at));
                inner.set_span(group.span().located_at(at));
                token = TokenTree::Group(inner);
            } else {
                token.set_span(token.span().located_at(at));
            }
            token
        })
        .collect()
}
