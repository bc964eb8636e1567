//! One task call of a workflow: the node, whose closure calls the user's function with
//! the user's argument tokens (rustc reports type and arity errors at them), and the
//! key closure beside it that a `#[task(cache)]` task registers.

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::expand::{handle, hygienic, read};
use super::{Arg, Call};

/// `__aqueduct_builder.node(…)` for one task call: the closure calls the user's function
/// with the user's argument tokens, so rustc reports type and arity errors at them.
pub(super) fn emit_call(call: &Call, node_name: &str, p: &TokenStream) -> TokenStream {
    let task = &call.task;
    // A part a `match` arm bound is read through the binding it is a part of.
    let inputs = call.args.iter().map(|arg| match &arg.part {
        Some(part) => read(&super::at_span(&part.root, arg.root.span())),
        None => read(&arg.root),
    });
    // Such a part of a binding a `match` took apart on its outcome is read whatever
    // became of the binding (`Outcome::Failed(e)`).
    let tolerant: u16 = call
        .args
        .iter()
        .enumerate()
        .filter(|(_, arg)| arg.part.as_ref().is_some_and(|part| part.outcome))
        .map(|(i, _)| 1u16.checked_shl(i as u32).unwrap_or(0))
        .sum();
    // Each argument is bound before the call, so its type is known (`&T`, or
    // `&Outcome<T>` for a tolerant parameter) when rustc checks the call, and deref
    // coercions (`&Vec<T>` to `&[T]`) apply as in a hand-written call.
    let mut locals = Vec::new();
    let mut picks = Vec::new();
    let mut moves = Vec::new();
    // What a cached task's key is made of: each input as the task reads it, in order;
    // one read by value is peeked at before the call takes it.
    let mut key_picks = Vec::new();
    let mut key_parts = Vec::new();
    let mut key_moves = Vec::new();
    for (i, arg) in call.args.iter().enumerate() {
        let last_span = last_span(arg);
        let local = arg_local(i, arg);
        let root = handle(&arg.root);
        if arg.moved {
            // Taken out of the run: the value itself, passed as written. For a task
            // that takes `&T`, rustc's mismatch is at the user's token.
            picks.push(quote_spanned!(arg.root.span()=> __aqueduct_task.take::<#i, _>(__aqueduct_input.slots(), #root)));
            locals.push(local);
            moves.push(quote_spanned!(Span::mixed_site()=> __aqueduct_builder.moved(#root);));
            let input = Ident::new("__aqueduct_input", Span::call_site());
            key_moves.push(quote_spanned! {Span::mixed_site()=>
                __aqueduct_task.key_moved::<#i, _>(__aqueduct_key, #input.slots(), #root)?;
            });
            continue;
        }
        let pick = |mismatch: TokenStream| {
            let picked = match &arg.part {
                Some(part) => {
                    let input = Ident::new("__aqueduct_input", Span::call_site());
                    let slots = quote!(#input.slots());
                    super::expand_branch::project(part, &arg.root, &slots, p, &mismatch)
                }
                None => {
                    quote_spanned!(arg.root.span()=> __aqueduct_task.arg::<#i, _>(__aqueduct_input.slots(), #root))
                }
            };
            let fields = arg.fields.iter().map(|(dot, member)| quote!(#dot #member));
            if arg.fields.is_empty() {
                picked
            } else {
                quote!(&#picked #(#fields)*)
            }
        };
        picks.push(pick(
            quote!(return #p::Step::done(::core::result::Result::Err(#p::mismatched()))),
        ));
        key_picks.push(pick(
            quote!(return ::core::result::Result::Err(#p::mismatched().to_string())),
        ));
        let key_local = format_ident!("__aqueduct_key{}", i, span = hygienic(last_span));
        // At the argument: an input a cached task cannot hash is reported there.
        key_parts.push(quote_spanned! {hygienic(arg.root.span())=>
            __aqueduct_task.key_part(__aqueduct_key, #key_local)?;
        });
        locals.push(local);
    }
    // The picks name the task's marker and the closure's input without hygiene, as the
    // user's tokens do: rustc's reports at those tokens stay as they are. They do so in
    // a block of their own, where the only user tokens are field names, so no name of
    // the user's can meet them; the task's call, outside it, sees only hygienic locals.
    let pick = (!picks.is_empty()).then(|| {
        let (task, input) = (
            Ident::new("__aqueduct_task", Span::call_site()),
            Ident::new("__aqueduct_input", Span::call_site()),
        );
        quote_spanned! {Span::mixed_site()=>
            let (#(#locals,)*) = {
                let #task = __aqueduct_task;
                let #input = __aqueduct_input;
                (#(#picks,)*)
            };
        }
    });
    let marker = marker(call, p);
    let the_call = user_call(call);
    let (node, tolerant) = if tolerant == 0 {
        (quote_spanned!(Span::mixed_site()=> node), None)
    } else {
        (
            quote_spanned!(Span::mixed_site()=> node_with),
            Some(quote!(#tolerant,)),
        )
    };
    let key_locals = call
        .args
        .iter()
        .enumerate()
        .filter(|(_, arg)| !arg.moved)
        .map(|(i, arg)| format_ident!("__aqueduct_key{}", i, span = hygienic(last_span(arg))));
    // As the call's picks (so a mistake in them is reported once: rustc drops the
    // second, identical report), with the inputs taken by value added to the key
    // first, before anything is read by reference.
    let key_pick = (!call.args.is_empty()).then(|| {
        let (task, input) = (
            Ident::new("__aqueduct_task", Span::call_site()),
            Ident::new("__aqueduct_input", Span::call_site()),
        );
        if key_picks.is_empty() {
            return quote_spanned! {Span::mixed_site()=>
                let #task = __aqueduct_task;
                let #input = __aqueduct_input;
                #(#key_moves)*
            };
        }
        quote_spanned! {Span::mixed_site()=>
            #[allow(unused_variables)]
            let (#(#key_locals,)*) = {
                let #task = __aqueduct_task;
                let #input = __aqueduct_input;
                #(#key_moves)*
                (#(#key_picks,)*)
            };
        }
    });
    // At the task's name: an output a cached task cannot save is reported there.
    let register = quote_spanned! {hygienic(task.span())=>
        __aqueduct_task.cache(
            __aqueduct_builder.by_ref(),
            __aqueduct_node,
            __aqueduct_inputs,
            move |__aqueduct_input, __aqueduct_key| {
                #key_pick
                #(#key_parts)*
                ::core::result::Result::Ok(())
            },
        );
    };
    quote_spanned! {Span::mixed_site()=> {
        let __aqueduct_task = #marker;
        let (__aqueduct_info, __aqueduct_callee) =
            __aqueduct_task.info_callee(__aqueduct_builder.by_ref());
        #(#moves)*
        let __aqueduct_inputs = (#(#inputs,)*);
        let __aqueduct_node = __aqueduct_builder.#node(
            __aqueduct_info,
            #node_name,
            __aqueduct_inputs,
            #tolerant
            move |__aqueduct_input| {
                #pick
                // A fake replaces the task's body while the call runs (see
                // `__private::Callee`).
                let __aqueduct_entered = __aqueduct_callee.enter();
                __aqueduct_callee.scope(__aqueduct_task.step(#the_call))
            },
        );
        // Registers the key of a `#[task(cache)]` task; nothing for the others.
        #register
        __aqueduct_node
    }}
}

/// The span of an argument's last token: its root, or its last field.
fn last_span(arg: &Arg) -> Span {
    arg.fields
        .last()
        .map_or(arg.root.span(), |(_, member)| member.span())
}

/// The local holding argument `i` of a call as the task takes it (`&T`, or the value
/// moved in): hygienic, located at the user's token.
pub(super) fn arg_local(i: usize, arg: &Arg) -> Ident {
    format_ident!("__aqueduct_arg{}", i, span = hygienic(last_span(arg)))
}

/// The task's marker, spanned at its name.
pub(super) fn marker(call: &Call, p: &TokenStream) -> TokenStream {
    let task = &call.task;
    quote_spanned!(task.span()=> <#task as #p::HasMarker>::MARKER)
}

/// The user's call with each argument's [`arg_local`]: `task(&(*arg0), (arg1))`, the
/// task, parentheses and arguments spanned at the user's tokens, so rustc reports type
/// and arity errors there.
pub(super) fn user_call(call: &Call) -> TokenStream {
    let args = call.args.iter().enumerate().map(|(i, arg)| {
        let (local, last_span) = (arg_local(i, arg), last_span(arg));
        if arg.moved {
            let mut value = Group::new(Delimiter::Parenthesis, quote!(#local));
            value.set_span(last_span);
            return value.to_token_stream();
        }
        let and = arg
            .and
            .map_or_else(|| quote_spanned!(arg.root.span()=> &), |and| quote!(#and));
        let star = quote_spanned!(last_span=> *);
        // In parentheses spanned at the user's token, so the argument's span is the
        // user's `&input` rather than the hygienic local's.
        let mut deref = Group::new(Delimiter::Parenthesis, quote!(#star #local));
        deref.set_span(last_span);
        quote!(#and #deref)
    });
    let mut parens = Group::new(Delimiter::Parenthesis, quote!(#(#args),*));
    parens.set_span(call.paren);
    call.task
        .to_token_stream()
        .into_iter()
        .chain([TokenTree::Group(parens)])
        .collect()
}
