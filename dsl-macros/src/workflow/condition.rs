//! A condition's, scrutinee's or guard's tokens: the workflow's names they read,
//! rewritten to read the run's values in place, and the text the graph shows.

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream, TokenTree};

use super::Read;
use super::validate::Scope;

/// The local a decision's closure binds a read name to (a reference to its value).
pub(super) fn read_local(ident: &Ident) -> Ident {
    let span = Span::mixed_site().located_at(ident.span());
    quote::format_ident!("__aqueduct_c_{}", ident, span = span)
}

/// `tokens` with every name of `scope` (but `shadowed`) replaced by a read of its value,
/// `(*__aqueduct_c_name)` spanned at the name; each name read once in `reads`. A name
/// is a token not after `.` or `::`, and not before `::`, `!` or a lone `:`.
pub(super) fn rewrite(
    tokens: TokenStream,
    scope: &Scope,
    shadowed: &[String],
    reads: &mut Vec<Read>,
) -> TokenStream {
    // The condition's own names (a closure's parameters, a `let` in a block) are not the
    // workflow's, wherever they appear in it.
    let mut own = shadowed.to_vec();
    locals(&tokens, &mut own);
    replace(tokens, scope, &own, reads)
}

/// The names `tokens` binds itself: the parameters of its closures (`|x, y: u32|` at the
/// start of an expression) and the names its `let`s bind.
fn locals(tokens: &TokenStream, out: &mut Vec<String>) {
    let tokens: Vec<TokenTree> = tokens.clone().into_iter().collect();
    let is = |at: usize, ch: char| matches!(tokens.get(at), Some(TokenTree::Punct(p)) if p.as_char() == ch);
    let mut index = 0;
    while index < tokens.len() {
        match &tokens[index] {
            TokenTree::Group(group) => locals(&group.stream(), out),
            TokenTree::Ident(ident) if ident == "let" => {
                let mut at = index + 1;
                while at < tokens.len() && !is(at, '=') && !is(at, ';') {
                    if let TokenTree::Ident(name) = &tokens[at] {
                        out.push(name.to_string());
                    }
                    if is(at, ':') {
                        break;
                    }
                    at += 1;
                }
            }
            // A closure starts an expression: at the start, or after `(`, `,`, `=` or
            // `move`; `a | b` is an `or`.
            TokenTree::Punct(p) if p.as_char() == '|' => {
                let starts = index == 0
                    || is(index - 1, ',')
                    || is(index - 1, '=')
                    || matches!(&tokens[index - 1], TokenTree::Ident(i) if i == "move");
                if starts {
                    let mut at = index + 1;
                    let mut typed = false;
                    while at < tokens.len() && !is(at, '|') {
                        match &tokens[at] {
                            TokenTree::Ident(name) if !typed => out.push(name.to_string()),
                            TokenTree::Punct(p) if p.as_char() == ':' => typed = true,
                            TokenTree::Punct(p) if p.as_char() == ',' => typed = false,
                            _ => {}
                        }
                        at += 1;
                    }
                    index = at;
                }
            }
            _ => {}
        }
        index += 1;
    }
}

/// `tokens` with every name of `scope` but `shadowed` replaced by a read of its value.
fn replace(
    tokens: TokenStream,
    scope: &Scope,
    shadowed: &[String],
    reads: &mut Vec<Read>,
) -> TokenStream {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = Vec::with_capacity(tokens.len());
    for (index, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Group(group) => {
                let inner = replace(group.stream(), scope, shadowed, reads);
                let mut rewritten = Group::new(group.delimiter(), inner);
                rewritten.set_span(group.span());
                out.push(TokenTree::Group(rewritten));
            }
            TokenTree::Ident(ident)
                if is_name(&tokens, index)
                    && scope.knows(ident)
                    && !shadowed.contains(&ident.to_string()) =>
            {
                if !reads.iter().any(|read| read.ident == *ident) {
                    reads.push(Read {
                        ident: ident.clone(),
                        part: scope.part(ident),
                        outcome: false,
                    });
                }
                let local = read_local(ident);
                let mut group = Group::new(
                    Delimiter::Parenthesis,
                    quote::quote_spanned!(ident.span()=> *#local),
                );
                group.set_span(ident.span());
                out.push(TokenTree::Group(group));
            }
            other => out.push(other.clone()),
        }
    }
    out.into_iter().collect()
}

/// Whether the identifier at `index` is a value's name rather than a field, a path's
/// segment, a macro's name or a field of a struct literal.
fn is_name(tokens: &[TokenTree], index: usize) -> bool {
    let punct = |at: Option<&TokenTree>, ch: char| matches!(at, Some(TokenTree::Punct(p)) if p.as_char() == ch);
    let before = index.checked_sub(1).and_then(|i| tokens.get(i));
    let before_that = index.checked_sub(2).and_then(|i| tokens.get(i));
    let after = tokens.get(index + 1);
    // `a.name`, `path::name`, `'name`: not a value's name. `field: name` is.
    let path = punct(before, ':') && punct(before_that, ':');
    if punct(before, '.') || path || punct(before, '\'') {
        return false;
    }
    // `name::…`, `name!(…)`, `name: value` (a struct literal's field).
    !(punct(after, ':') || punct(after, '!'))
}

/// Tokens as a person writes them: `Format::Csv(text)`, `p.score > 80`, not
/// `Format :: Csv (text)`.
pub(super) fn pretty(tokens: &TokenStream) -> String {
    let mut text = tokens.to_string();
    for (spaced, tight) in [
        (" :: ", "::"),
        (" . ", "."),
        (" (", "("),
        ("( ", "("),
        (" )", ")"),
        (" ,", ","),
        ("& ", "&"),
        ("! ", "!"),
        (" !", "!"),
        (" [", "["),
        ("[ ", "["),
        (" ]", "]"),
        (" : ", ": "),
    ] {
        text = text.replace(spaced, tight);
    }
    text
}
