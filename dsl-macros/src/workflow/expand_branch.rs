//! The generated code of an `if` or `match`: the decision node, whose closure is a
//! real `if`/`match` over the user's conditions and patterns (so rustc checks their
//! types and exhaustiveness at the user's tokens), each arm's nodes built inside
//! `Builder::arm`, and the branch node giving the taken arm's value.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};

use syn::spanned::Spanned;

use super::condition::read_local;
use super::expand::{Cx, emit_nodes, emit_tail, handle, local, unread};
use super::{Branch, Form, Part, Tail};
use crate::spans::respan;

/// Reads part `binding` in a closure that reads `slots`: the binding it is a part of,
/// matched again with the arm's pattern. `mismatch` is what the closure does if the
/// value no longer matches (it did when the decision ran).
pub(super) fn project(
    part: &Part,
    binding: &Ident,
    slots: &TokenStream,
    p: &TokenStream,
    mismatch: &TokenStream,
) -> TokenStream {
    let root = handle(&super::at_span(&part.root, binding.span()));
    let value = local("__aqueduct_s", binding.span());
    let read = if part.outcome {
        quote_spanned!(Span::mixed_site()=> #p::outcome_in(#slots, #root))
    } else {
        quote_spanned!(Span::mixed_site()=> #p::value_in(#slots, #root))
    };
    let fields = part.fields.iter().map(|(dot, member)| quote!(#dot #member));
    let scrutinee = if part.outcome {
        quote!(#value)
    } else {
        quote!(&(*#value) #(#fields)*)
    };
    let pattern = &part.pattern;
    quote_spanned! {Span::mixed_site()=> ({
        let #value = #read;
        match #scrutinee {
            #[allow(unused_variables)]
            #pattern => #binding,
            #[allow(unreachable_patterns)]
            _ => #mismatch,
        }
    })}
}

/// `{ tokens }`, its braces spanned at `at`.
fn braced(tokens: TokenStream, at: Span) -> proc_macro2::Group {
    let mut group = proc_macro2::Group::new(proc_macro2::Delimiter::Brace, tokens);
    group.set_span(at);
    group
}

/// `{ decide; arms; branch }` for the branch bound to `name` (its full node name).
pub(super) fn emit_branch(branch: &Branch, name: &str, cx: &Cx<'_>) -> TokenStream {
    let p = cx.p;
    let keyword = &branch.keyword;
    let builder = local("__aqueduct_builder", keyword.span());
    let decision = local("__aqueduct_decision", keyword.span());
    let decision_name = format!("{name}.{keyword}");
    let text = &branch.text;
    let labels = branch.arms.iter().map(|arm| &arm.label);
    // The decision reads each name once: a binding's value (or outcome), or the
    // binding a part is of.
    let input = Ident::new("__aqueduct_input", Span::mixed_site());
    let slots = quote_spanned!(Span::mixed_site()=> #input.slots());
    let mismatch = quote!(return ::core::result::Result::Err(#p::mismatched()));
    let mut inputs = Vec::new();
    let mut reads = Vec::new();
    let mut mask: u16 = 0;
    for read in &branch.reads {
        let local = read_local(&read.ident);
        let (root, outcome) = match &read.part {
            Some(part) => (super::at_span(&part.root, read.ident.span()), part.outcome),
            None => (read.ident.clone(), read.outcome),
        };
        if outcome {
            mask |= 1u16.checked_shl(inputs.len() as u32).unwrap_or(0);
        }
        let root_handle = handle(&root);
        inputs.push(quote_spanned!(read.ident.span()=> ::core::convert::identity(#root_handle)));
        let value = match &read.part {
            Some(part) => project(part, &read.ident, &slots, p, &mismatch),
            None if read.outcome => quote!(#p::outcome_in(#slots, #root_handle)),
            None => quote!(#p::value_in(#slots, #root_handle)),
        };
        reads.push(quote!(let #local = #value;));
    }
    if inputs.len() > 12 {
        return syn::Error::new(
            keyword.span(),
            "this decision reads more than 12 names: have a task compute what it decides on",
        )
        .to_compile_error();
    }
    let if_token = Ident::new("if", keyword.span());
    let match_token = Ident::new("match", keyword.span());
    let arm_count = branch.arms.len() as u32;
    let decide = match &branch.form {
        Form::If { conditions, .. } => {
            // `if c0 { 0 } else if c1 { 1 } … else { last }`.
            // Only `if` and the conditions are the user's tokens: the rest is the
            // expansion's, so lints about the user's formatting never see it.
            let last = arm_count - 1;
            let mut chain = quote_spanned!(Span::mixed_site()=> { #last });
            for (index, condition) in conditions.iter().enumerate().rev() {
                let index = index as u32;
                let arm = quote_spanned!(Span::mixed_site()=> { #index } else #chain);
                chain = quote!(#if_token #condition #arm);
            }
            chain
        }
        Form::Match { scrutinee, .. } => {
            let arms = branch.arms.iter().enumerate().map(|(index, arm)| {
                let index = index as u32;
                let (pattern, guard) = arm.pattern.as_ref().expect("a match arm has a pattern");
                let guard = guard.as_ref().map(|guard| quote!(if #guard));
                quote! {
                    #[allow(unused_variables)]
                    #pattern #guard => #index,
                }
            });
            quote!(#match_token #scrutinee { #(#arms)* })
        }
    };
    let checkpoint_decision = cx
        .durable
        .then(|| quote_spanned!(keyword.span()=> #builder.checkpoint(#decision.handle());));
    // Each arm's nodes, built inside `Builder::arm`.
    let mut tails = Vec::new();
    let mut spans = Vec::new();
    let mut arms = Vec::new();
    for (index, arm) in branch.arms.iter().enumerate() {
        let Some(tail) = &arm.tail else { continue };
        let index = index as u32;
        let span = match tail {
            Tail::Binding(ident) => ident.span(),
            Tail::Call(call) | Tail::Workflow(call) => call.task.span(),
        };
        let value = local(&format!("__aqueduct_arm{index}"), span);
        spans.push(span);
        let inner = Cx {
            p,
            prefix: format!("{name}.{}.", arm.segment),
            durable: cx.durable,
            inline: true,
        };
        let nodes = emit_nodes(&arm.nodes, &inner);
        let unread = unread(std::iter::empty(), &arm.nodes, Some(tail));
        let tail = emit_tail(tail, &inner);
        arms.push(quote_spanned! {Span::mixed_site()=>
            let #value = #builder.arm(#decision, #index, |#builder| {
                #nodes
                #unread
                #tail
            });
        });
        tails.push(value);
    }
    let value = match &branch.form {
        Form::If {
            has_else: false, ..
        } => {
            let then = &tails[0];
            quote_spanned!(Span::mixed_site()=> #builder.branch_option(#name, #decision, #then))
        }
        form => {
            // The arms' values have one type: checked in a real `if` or `match` over
            // them, so a mismatch is rustc's "incompatible types" at the arms.
            let which = Ident::new("__aqueduct_which", Span::mixed_site());
            let values: Vec<TokenStream> = tails
                .iter()
                .zip(&spans)
                .map(|(tail, span)| respan(quote!(#p::value_of(#tail)), *span))
                .collect();
            let picked = match form {
                // Each block spanned at its arm's value, so rustc's report spans the
                // user's `if` … arms, not the whole macro.
                Form::If { .. } => {
                    let last = values.last().expect("an if has arms");
                    let at = *spans.last().expect("an if has arms");
                    let mut chain = braced(quote!(#last), at).to_token_stream();
                    for (index, tail) in values.iter().enumerate().rev().skip(1) {
                        let block = braced(quote!(#tail), spans[index]);
                        let index = index as u32;
                        let rest = quote_spanned!(Span::mixed_site()=> else #chain);
                        chain = quote!(#if_token #which == #index #block #rest);
                    }
                    chain
                }
                Form::Match { .. } => {
                    let count = values.len();
                    let arms = values.iter().enumerate().map(|(index, tail)| {
                        if index + 1 == count {
                            quote!(_ => #tail,)
                        } else {
                            let index = index as u32;
                            quote!(#index => #tail,)
                        }
                    });
                    let last = *spans.last().expect("a match has arms");
                    let block = braced(quote!(#(#arms)*), last);
                    quote!(#match_token #which #block)
                }
            };
            // Never called: it gives the branch its type, and rustc's report of arms of
            // different types, in the user's types. Its blocks are spanned at arms that
            // may be far apart in the source.
            quote_spanned! {Span::mixed_site()=>
                #builder.branch_checked(
                    #name,
                    #decision,
                    ::std::vec![#(#p::node_ref(#tails)),*],
                    #[allow(clippy::suspicious_else_formatting)]
                    |#which: u32| #picked,
                )
            }
        }
    };
    quote_spanned! {Span::mixed_site()=> {
        let #decision = #builder.decide(
            #decision_name,
            #text,
            &[#(#labels),*],
            (#(#inputs,)*),
            #mask,
            move |#input| {
                let #input = #input;
                #(#reads)*
                ::core::result::Result::Ok(#decide)
            },
        );
        #checkpoint_decision
        #(#arms)*
        #value
    }}
}
