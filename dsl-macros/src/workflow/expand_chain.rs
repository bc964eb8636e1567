//! A `for` body's typed chain: the body written out once more as one plain closure,
//! which a fused fan-out runs per item with no slots, boxes or records (see
//! `plan/chain.rs` in the core crate). Each binding is an `Option` of its task's
//! output; each call reads its inputs from the bindings before it and runs only if
//! they succeeded. The calls are the user's tokens with the same locals as the node's
//! closure, so they type-check exactly when the node's closure does.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use super::expand::{handle, hygienic};
use super::expand_call::{arg_local, marker, user_call};
use super::{Call, Init, Loop, Tail};

/// What a name is in the chain.
enum Source {
    /// The item or an import: `Option<&T>`, always `Some`.
    Param,
    /// A task's binding: `Option<T>`.
    Binding,
}

/// A body's typed chain, in the pieces `emit_loop` places.
pub(super) struct TypedChain {
    /// At the top of the body's closure: the imports' handles, under names no later
    /// binding of the body can shadow.
    pub(super) imports: TokenStream,
    /// After each node's `let`: its handle, likewise.
    pub(super) nodes: Vec<TokenStream>,
    /// After the tail (`__aqueduct_out`): `__aqueduct_builder.chain(…)`, given the
    /// checked collection (`__private::Checked`) as `__aqueduct_collection`.
    pub(super) chain: TokenStream,
}

/// The handle of the body's `i`th node, kept where it was made.
fn node_handle(i: usize) -> Ident {
    format_ident!("__aqueduct_node{}", i, span = Span::mixed_site())
}

/// The handle of the body's `k`th import, kept at the top of the body.
fn import_handle(k: usize) -> Ident {
    format_ident!("__aqueduct_import{}", k, span = Span::mixed_site())
}

/// The typed chain of `body`, whose tail's handle is `__aqueduct_out`; `None` for a
/// body that cannot run as one: a capped or by-value `for`, a body with anything but
/// task calls, or whose output is not a task's.
pub(super) fn emit_chain(body: &Loop, p: &TokenStream) -> Option<TypedChain> {
    if body.cap.is_some() || body.by_value {
        return None;
    }
    let mut names: Vec<(&Ident, Source)> = std::iter::once(&body.item)
        .chain(&body.imports)
        .map(|name| (name, Source::Param))
        .collect();
    let mut calls = Vec::new();
    // What each call calls (the task or its fake), made before the chain's closure.
    let mut callees = Vec::new();
    for (i, node) in body.nodes.iter().enumerate() {
        let Init::Call(call) = &node.init else {
            return None;
        };
        calls.push(emit_typed_call(call, &node_handle(i), i, &names, p)?);
        callees.push(chain_callee(call, i, p));
        names.push((&node.binding, Source::Binding));
    }
    let out = Ident::new("__aqueduct_out", Span::mixed_site());
    let tail = match &body.tail {
        Tail::Call(call) => {
            let n = body.nodes.len();
            callees.push(chain_callee(call, n, p));
            emit_typed_call(call, &out, n, &names, p)?
        }
        Tail::Binding(name) => match source(&names, name)? {
            Source::Binding => {
                let local = local(name);
                quote_spanned!(Span::mixed_site()=> #local.0.take())
            }
            Source::Param => return None,
        },
        Tail::Workflow(_) => return None,
    };
    let bindings = body
        .nodes
        .iter()
        .map(|node| local(&node.binding))
        .collect::<Vec<_>>();
    let item_local = local(&body.item);
    let imports = body.imports.iter().enumerate().map(|(k, name)| {
        let (local, handle) = (local(name), import_handle(k));
        quote_spanned!(Span::mixed_site()=> let #local = __aqueduct_imports.get(#handle);)
    });
    let kept_imports = body.imports.iter().enumerate().map(|(k, name)| {
        let (kept, handle) = (import_handle(k), handle(name));
        quote_spanned!(Span::mixed_site()=> let #kept = #handle;)
    });
    let kept_nodes = body.nodes.iter().enumerate().map(|(i, node)| {
        let (kept, handle) = (node_handle(i), handle(&node.binding));
        quote_spanned!(Span::mixed_site()=> let #kept = #handle;)
    });
    // Each binding is held in a `ChainValue`, which leaks its value rather than drop it
    // while a panic unwinds: a value's `Drop` that panics must not panic again in
    // another's (an abort).
    // Checked before the fan-out (`fan_over`): the chain's items are its items.
    let collection = Ident::new("__aqueduct_collection", Span::mixed_site());
    let chain = quote_spanned! {Span::mixed_site()=>
        #(#callees)*
        __aqueduct_builder.chain(
            #collection,
            __aqueduct_out,
            move |__aqueduct_chain: &mut #p::Chain<'_>, __aqueduct_item, __aqueduct_imports: &#p::Imports<'_>| {
                #[allow(unused_variables)]
                let #item_local = ::core::option::Option::Some(__aqueduct_item);
                #(#[allow(unused_variables)] #imports)*
                #(#[allow(unused_variables, unused_mut)] let mut #bindings = #p::ChainValue(#calls);)*
                #tail
            },
        );
    };
    Some(TypedChain {
        imports: quote!(#(#kept_imports)*),
        nodes: kept_nodes.collect(),
        chain,
    })
}

/// The local holding what the chain's `i`th call calls.
fn callee_local(i: usize) -> Ident {
    format_ident!("__aqueduct_callee{}", i, span = Span::mixed_site())
}

/// `let` of what the chain's `i`th call calls: the task or its fake.
fn chain_callee(call: &Call, i: usize, p: &TokenStream) -> TokenStream {
    let (marker, local) = (marker(call, p), callee_local(i));
    quote_spanned!(Span::mixed_site()=> let #local = #marker.chain_callee(__aqueduct_builder.by_ref());)
}

/// One call in the chain, the `index`th: `Some(output)` if it ran and succeeded. `None` if
/// an argument names something the chain cannot hold (an outer value it does not
/// import).
fn emit_typed_call(
    call: &Call,
    node: &Ident,
    index: usize,
    names: &[(&Ident, Source)],
    p: &TokenStream,
) -> Option<TokenStream> {
    let mut picks = Vec::new();
    let mut reads = Vec::new();
    let mut locals = Vec::new();
    for (i, arg) in call.args.iter().enumerate() {
        if arg.part.is_some() {
            return None;
        }
        let root = local(&arg.root);
        let read = format_ident!("__aqueduct_read{}", i, span = Span::mixed_site());
        // At the user's token, as the node closure's picks: a mistake there is the
        // same report at the same place, which rustc gives once.
        let at = arg.root.span();
        let task = Ident::new("__aqueduct_task", Span::call_site());
        let pick = match (source(names, &arg.root)?, arg.moved) {
            (Source::Binding, true) => {
                quote_spanned!(at=> #task.typed_take::<#i, _>(&mut #root.0))
            }
            (Source::Binding, false) => {
                quote_spanned!(at=> #task.typed_arg::<#i, _>(#root.0.as_ref()))
            }
            (Source::Param, false) => quote_spanned!(at=> #task.typed_arg::<#i, _>(#root)),
            (Source::Param, true) => return None,
        };
        let fields = arg.fields.iter().map(|(dot, member)| quote!(#dot #member));
        let value = if arg.fields.is_empty() {
            quote!(#read)
        } else {
            quote!(&#read #(#fields)*)
        };
        let local = arg_local(i, arg);
        locals.push(quote_spanned!(Span::mixed_site()=> let #local = #value;));
        picks.push(pick);
        reads.push(read);
    }
    let marker = marker(call, p);
    let callee = callee_local(index);
    let the_call = user_call(call);
    let run = quote_spanned! {Span::mixed_site()=>
        __aqueduct_chain.call(#node, || {
            let __aqueduct_entered = #callee.enter();
            __aqueduct_task.typed(#the_call)
        })
    };
    if picks.is_empty() {
        return Some(quote_spanned! {Span::mixed_site()=> {
            let __aqueduct_task = #marker;
            #run
        }});
    }
    let task = Ident::new("__aqueduct_task", Span::call_site());
    Some(quote_spanned! {Span::mixed_site()=> {
        let __aqueduct_task = #marker;
        // The picks name the marker without hygiene, in a block of their own (see
        // `emit_call`).
        let __aqueduct_picked = {
            let #task = __aqueduct_task;
            (#(#picks,)*)
        };
        match __aqueduct_picked {
            (#(::core::option::Option::Some(#reads),)*) => {
                #(#locals)*
                #run
            }
            _ => __aqueduct_chain.skip(#node),
        }
    }})
}

/// What `name` is in the chain, if it is there.
fn source<'n>(names: &'n [(&Ident, Source)], name: &Ident) -> Option<&'n Source> {
    names
        .iter()
        .rev()
        .find(|(known, _)| *known == name)
        .map(|(_, source)| source)
}

/// The chain's local for `name`: hygienic, located at the user's token.
fn local(name: &Ident) -> Ident {
    format_ident!("__aqueduct_v_{}", name, span = hygienic(name.span()))
}
