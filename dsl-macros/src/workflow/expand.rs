//! The generated code: the workflow's function and type, a builder call per node, and
//! the hygiene helpers that keep the expansion's names apart from the user's. Reads the
//! data model only.

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::expand_branch::emit_branch;
use super::expand_call::emit_call;
use super::{Call, Init, Loop, Node, Tail, Workflow};
use crate::crate_path::CratePath;

/// The span of a name the expansion makes for itself (the builder, an argument's local,
/// a parameter's or binding's handle): `Span::mixed_site()` hygiene, so the user's
/// tokens (a task's name, a path in a type) never resolve to it and a user's name never
/// shadows it; located at `at`, so rustc still points at the user's token.
pub(super) fn hygienic(at: Span) -> Span {
    Span::mixed_site().located_at(at)
}

/// One of the expansion's own locals (`__aqueduct_builder`, …), located at `at`. Only
/// the names are hygienic: the tokens around them keep the spans they had, so rustc
/// reports at the user's tokens as before.
pub(super) fn local(name: &str, at: Span) -> Ident {
    Ident::new(name, hygienic(at))
}

/// The local holding the `Handle` of a parameter, binding or loop item. Hygienic, so it
/// never shadows a task of the user's name (`let double = double(&x);`) or anything
/// else the user's tokens name; prefixed, so it never meets one of the expansion's own
/// locals, which are hygienic too (a binding `__aqueduct_builder` has the handle
/// `__aqueduct_h___aqueduct_builder`, not the builder's name).
pub(super) fn handle(ident: &Ident) -> Ident {
    format_ident!("__aqueduct_h_{}", ident, span = hygienic(ident.span()))
}

/// The handle of `ident` as a value, spanned at the user's token: rustc reports a
/// problem with it (its type cannot be saved, or iterated) there, as it does for the
/// user's own code, rather than as coming from the macro.
pub(super) fn read(ident: &Ident) -> TokenStream {
    let handle = handle(ident);
    quote_spanned!(ident.span()=> ::core::convert::identity(#handle))
}

pub(super) fn emit(workflow: &Workflow) -> TokenStream {
    let Workflow {
        attrs,
        vis,
        name,
        ret,
        ..
    } = workflow;
    let p = &workflow.crate_path.private();
    let param_names: Vec<_> = workflow.params.iter().map(|(ident, _)| ident).collect();
    let param_handles: Vec<_> = param_names.iter().map(|ident| handle(ident)).collect();
    let param_types: Vec<_> = workflow.params.iter().map(|(_, ty)| ty).collect();
    // The last parameters may be resources: given to each run, never saved.
    let saved = workflow.params.len() - workflow.resources;
    let (saved_names, resource_names) = param_names.split_at(saved);
    let (saved_types, resource_types) = param_types.split_at(saved);
    let moves_params = workflow.moves_param;
    let top = Cx {
        p,
        prefix: String::new(),
        durable: workflow.durable.is_some(),
        inline: false,
    };
    let nodes = emit_nodes(&workflow.nodes, &top);
    // A durable workflow's checkpoints read every top-level name.
    let unread = workflow.durable.is_none().then(|| {
        unread(
            param_names.iter().copied(),
            &workflow.nodes,
            Some(&workflow.tail),
        )
    });
    // A durable workflow checkpoints every top-level node and saves its parameters as
    // the run's input; each call is spanned at the binding, so a value serde cannot
    // save is reported there.
    let durable = workflow.durable.map(|(version, at)| {
        let bindings = saved_names
            .iter()
            .copied()
            .chain(workflow.nodes.iter().map(|node| &node.binding));
        let checkpoints = bindings.map(|binding| {
            let (builder, handle) = (local("__aqueduct_builder", binding.span()), read(binding));
            quote_spanned!(binding.span()=> #builder.checkpoint(#handle);)
        });
        // Spanned at the attribute: without Aqueduct's `durable` feature, the error
        // is there.
        let builder = local("__aqueduct_builder", at);
        quote_spanned! {at=>
            #p::Builder::durable(&mut #builder, #version);
            #(#checkpoints)*
        }
    });
    let tail = emit_tail(&workflow.tail, &top);
    let tail_span = match &workflow.tail {
        Tail::Binding(ident) => ident.span(),
        Tail::Call(call) | Tail::Workflow(call) => call.task.span(),
    };
    let (builder, tail_local) = (
        local("__aqueduct_builder", tail_span),
        local("__aqueduct_tail", tail_span),
    );
    let durable_tail = workflow
        .durable
        .map(|_| quote_spanned!(tail_span=> #builder.checkpoint(::core::convert::identity(#tail_local));));
    let output = quote_spanned!(tail_span=> #p::output::<#ret, _>(#tail_local));
    let workflow_doc = format!(
        "The built graph of the workflow [`{name}()`](fn@{name}): its description and its runs with a report."
    );
    let workflow_type = quote!(#p::Workflow<(#(#param_types,)*), #ret>);
    let declare_resources = (!resource_names.is_empty()).then(|| {
        let count = resource_names.len();
        quote_spanned!(Span::mixed_site()=> __aqueduct_builder.resources(#count);)
    });
    let methods_doc = methods_doc(&workflow.crate_path);
    // The builder's code, given the fakes to build with (`None` for the workflow
    // itself). In a function of its own: the statics are outside it, so a binding
    // named like one does not clash with it.
    let build = quote_spanned! {Span::mixed_site()=>
        fn build(
            __aqueduct_fakes: ::core::option::Option<&#p::Arc<#p::Fakes>>,
        ) -> #workflow_type {
            let (mut __aqueduct_builder, (#(#param_handles,)*)) =
                #p::Builder::<(#(#param_types,)*)>::new(
                    ::core::stringify!(#name),
                    [#(::core::stringify!(#param_names)),*],
                );
            if let ::core::option::Option::Some(__aqueduct_fakes) = __aqueduct_fakes {
                __aqueduct_builder.use_fakes(__aqueduct_fakes);
            }
            #nodes
            #unread
            #durable
            let __aqueduct_tail = #tail;
            #durable_tail
            #declare_resources
            __aqueduct_builder.output(#output)
        }
    };
    let with_fakes_doc = with_fakes_doc(&workflow.crate_path);
    let faked = quote!(#p::faked(::core::stringify!(#name), fakes, |fakes| <#name as #p::Subflow>::build(::core::option::Option::Some(fakes))));
    // With resources, the workflow as built takes every parameter (what another
    // workflow passes it as a node: `Subflow`); `workflow()` is the same one, split into
    // its parameters and its resources.
    let (run, public_type, split) = if resource_names.is_empty() {
        (
            quote!(#name::workflow().run((#(#param_names,)*))),
            workflow_type.clone(),
            None,
        )
    } else {
        (
            quote!(#name::workflow().run_with((#(#saved_names,)*), (#(#resource_names,)*))),
            quote!(#p::Workflow<(#(#saved_types,)*), #ret, (#(#resource_types,)*)>),
            Some(quote!(with_resources::<(#(#saved_types,)*), (#(#resource_types,)*)>())),
        )
    };
    let workflow_body = match &split {
        None => quote!(<#name as #p::Subflow>::workflow()),
        Some(split) => quote! {
            static SPLIT: #p::OnceLock<#public_type> = #p::OnceLock::new();
            SPLIT.get_or_init(|| <#name as #p::Subflow>::workflow().#split)
        },
    };
    let split_faked = split.map(|split| quote!(.map(|built| built.#split)));
    let workflow_fn = quote! {
        #vis fn workflow() -> &'static #public_type {
            #workflow_body
        }

        #(#[doc = #with_fakes_doc])*
        #vis fn with_fakes(
            fakes: impl ::core::iter::IntoIterator<Item = #p::Fake>,
        ) -> ::core::result::Result<#public_type, #p::Error> {
            #faked #split_faked
        }
    };
    quote! {
        #(#attrs)*
        #vis fn #name(#(#param_names: #param_types),*)
            -> impl ::core::future::Future<Output = ::core::result::Result<#ret, #p::Error>>
                + ::core::marker::Send + 'static
        {
            #run
        }

        #[doc = #workflow_doc]
        #[allow(non_camel_case_types)]
        #vis struct #name {
            _private: (),
        }

        impl #p::Subflow for #name {
            type Params = (#(#param_types,)*);
            type Output = #ret;
            const MOVES_PARAMS: bool = #moves_params;
            fn workflow() -> &'static #workflow_type {
                static WORKFLOW: #p::OnceLock<#workflow_type> = #p::OnceLock::new();
                WORKFLOW.get_or_init(|| Self::build(::core::option::Option::None))
            }
            #build
        }

        impl #name {
            #(#[doc = #methods_doc])*
            #workflow_fn
        }
    }
}

/// The doc of the workflow type's `with_fakes()`, a line per `#[doc]`.
fn with_fakes_doc(crate_path: &CratePath) -> [String; 3] {
    let fake = match crate_path.doc_link() {
        Some(path) => format!("[`aqueduct::fake`]({path}::fake)"),
        None => "`aqueduct::fake`".to_owned(),
    };
    [
        " The same workflow, built with some of its tasks (here, in its `for` bodies, its"
            .to_owned(),
        format!(
            " branches and its sub-workflows) replaced by fakes: `task_name::fake(f)`. See {fake}."
        ),
        " Refused if a fake's task is called nowhere, or faked twice.".to_owned(),
    ]
}

/// The doc of the workflow type's `workflow()`, a line per `#[doc]`, its links through
/// the crate's path (plain names when they could not resolve, from a `$crate`).
fn methods_doc(crate_path: &CratePath) -> [String; 3] {
    let (graph, runner) = match crate_path.doc_link() {
        Some(path) => (
            format!("[`graph()`]({path}::Workflow::graph)"),
            format!("[`runner()`]({path}::Workflow::runner)"),
        ),
        None => ("`graph()`".to_owned(), "`runner()`".to_owned()),
    };
    [
        format!(" The workflow, built once: {graph} describes"),
        format!(" it without running it; {runner} configures a"),
        " run (fail-fast, timeout, cancellation) and returns its report too.".to_owned(),
    ]
}

/// For each of a scope's names that nothing reads, `{ let name = handle; }` with the
/// user's token: the handles are hygienic, so rustc would not warn of an unused
/// variable at a binding nothing depends on; this binding is what it warns of, with
/// its `_name` hint, and it shadows nothing.
pub(super) fn unread<'a>(
    defined: impl IntoIterator<Item = &'a Ident>,
    nodes: &'a [Node],
    tail: Option<&'a Tail>,
) -> TokenStream {
    let mut reads: Vec<&Ident> = Vec::new();
    reads_of(nodes, tail, &mut reads);
    defined
        .into_iter()
        .chain(nodes.iter().map(|node| &node.binding))
        .filter(|name| !reads.contains(name))
        .map(|name| {
            let handle = handle(name);
            quote!({ let #name = #handle; })
        })
        .collect()
}

/// Every name `nodes` and `tail` read, an arm's and a decision's included.
fn reads_of<'a>(nodes: &'a [Node], tail: Option<&'a Tail>, reads: &mut Vec<&'a Ident>) {
    let roots = |call: &'a Call| call.args.iter().map(|arg| &arg.root);
    for node in nodes {
        match &node.init {
            Init::Call(call) | Init::Workflow(call) => reads.extend(roots(call)),
            Init::Loop(body) => {
                reads.push(&body.collection.root);
                reads.extend(&body.imports);
            }
            Init::Branch(branch) => {
                for read in &branch.reads {
                    reads.push(&read.ident);
                    reads.extend(read.part.as_ref().map(|part| &part.root));
                }
                for arm in &branch.arms {
                    reads_of(&arm.nodes, arm.tail.as_ref(), reads);
                }
            }
        }
        if let Init::Call(call) | Init::Workflow(call) = &node.init {
            reads.extend(
                call.args
                    .iter()
                    .filter_map(|arg| arg.part.as_ref().map(|p| &p.root)),
            );
        }
    }
    match tail {
        Some(Tail::Call(call) | Tail::Workflow(call)) => {
            reads.extend(roots(call));
            reads.extend(
                call.args
                    .iter()
                    .filter_map(|arg| arg.part.as_ref().map(|p| &p.root)),
            );
        }
        Some(Tail::Binding(ident)) => reads.push(ident),
        None => {}
    }
}

/// Where nodes are emitted: the crate's private path, the prefix of their names (an
/// arm's nodes are `branch.arm.name`), and whether a durable workflow checkpoints them.
pub(super) struct Cx<'a> {
    pub(super) p: &'a TokenStream,
    pub(super) prefix: String,
    /// At a durable workflow's top level or in an arm there: decisions are checkpointed.
    pub(super) durable: bool,
    /// In an arm or a loop's body: each node is checkpointed where it is made (the top
    /// level's are checkpointed together after them).
    pub(super) inline: bool,
}

/// The handle of a body's output: a binding's, or the node its tail call adds.
pub(super) fn emit_tail(tail: &Tail, cx: &Cx<'_>) -> TokenStream {
    let added = match tail {
        Tail::Binding(ident) => return handle(ident).to_token_stream(),
        Tail::Call(call) => emit_call(call, &format!("{}{}", cx.prefix, task_name(call)), cx.p),
        Tail::Workflow(call) => {
            emit_subflow(call, &format!("{}{}", cx.prefix, task_name(call)), cx.p)
        }
    };
    match (cx.inline && cx.durable, tail) {
        (true, Tail::Call(call) | Tail::Workflow(call)) => {
            let at = call.task.span();
            let (builder, added_local) = (
                local("__aqueduct_builder", at),
                local("__aqueduct_added", at),
            );
            quote_spanned! {at=> {
                let #added_local = #added;
                #builder.checkpoint(::core::convert::identity(#added_local));
                #added_local
            }}
        }
        _ => added,
    }
}

/// A tail call's node is named after its task.
fn task_name(call: &Call) -> String {
    call.task
        .path
        .segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default()
}

/// `let binding = …;` for every node, in order; `binding` is the node's [`handle`]. In
/// a durable workflow's arm, each is checkpointed too.
pub(super) fn emit_nodes(nodes: &[Node], cx: &Cx<'_>) -> TokenStream {
    let p = cx.p;
    nodes
        .iter()
        .map(|node| {
            let binding = handle(&node.binding);
            let annotation = node.annotation.as_ref().map(|ty| quote!(: #p::Handle<#ty>));
            let name = format!("{}{}", cx.prefix, node.binding);
            let add = match &node.init {
                Init::Call(call) => emit_call(call, &name, p),
                Init::Loop(body) => emit_loop(body, &name, cx),
                Init::Workflow(call) => emit_subflow(call, &name, p),
                Init::Branch(branch) => emit_branch(branch, &name, cx),
            };
            let checkpoint = (cx.inline && cx.durable).then(|| {
                let (builder, handle) = (
                    local("__aqueduct_builder", node.binding.span()),
                    read(&node.binding),
                );
                quote_spanned!(node.binding.span()=> #builder.checkpoint(#handle);)
            });
            quote!(let #binding #annotation = #add; #checkpoint)
        })
        .collect()
}

/// `__aqueduct_builder.fan_out_checked(…)` (`fan_out_owned` for a loop that takes its
/// collection) after `fan_over(…)` for a loop: the body is built by a closure that
/// receives the body's builder, the item's handle and the imported handles, bound to
/// the same handle names as outside, so the body's calls read exactly as written.
fn emit_loop(body: &Loop, node_name: &str, cx: &Cx<'_>) -> TokenStream {
    let p = cx.p;
    let chain = super::expand_chain::emit_chain(body, p);
    let loop_body = body;
    let Loop {
        cap,
        by_value,
        item,
        collection,
        imports,
        nodes,
        tail,
    } = body;
    // Checked at the user's token, before the body: a collection that cannot give its
    // items away, or a value that is no collection (then reported there once).
    // The whole `let` is located there, so rustc has nowhere else to report it.
    let checked = {
        let (at, handle) = (collection.root.span(), handle(&collection.root));
        let kept = local("__aqueduct_collection", at);
        let p = crate::spans::respan(p.clone(), at);
        if *by_value {
            quote_spanned!(at=> let #kept = #p::owned_collection(#handle);)
        } else {
            quote_spanned!(at=> let #kept = #p::fan_over(#handle);)
        }
    };
    let item_handle = handle(item);
    let imports: Vec<_> = imports.iter().map(handle).collect();
    let unread = unread([item], nodes, Some(tail));
    // A durable workflow checkpoints every node of every item (`each[17].sum`).
    let body_cx = Cx {
        p,
        prefix: String::new(),
        durable: cx.durable,
        inline: cx.durable,
    };
    let nodes = emit_nodes(nodes, &body_cx);
    let tail = emit_tail(tail, &body_cx);
    let cap = cap.map(|n| {
        quote_spanned!(Span::mixed_site()=> __aqueduct_builder.cap_items(__aqueduct_fan_out, #n);)
    });
    // A loop that takes its collection moves each item into its run.
    let fan_out = if *by_value {
        quote_spanned!(Span::mixed_site()=> fan_out_owned)
    } else {
        quote_spanned!(Span::mixed_site()=> fan_out_checked)
    };
    // A body of task calls is written out once more as its typed chain, which reads
    // the handles of the body's imports and nodes kept where they were made.
    let (top, nodes, tail) = match chain {
        Some(chain) => {
            let kept = chain.nodes.iter();
            let nodes = loop_body.nodes.iter().zip(kept).map(|(node, kept)| {
                let node = emit_nodes(std::slice::from_ref(node), &body_cx);
                quote!(#node #kept)
            });
            let nodes = quote!(#(#nodes)*);
            let chain_call = chain.chain;
            let tail = quote_spanned! {Span::mixed_site()=>
                let __aqueduct_out = #tail;
                #chain_call
                __aqueduct_out
            };
            (Some(chain.imports), nodes, tail)
        }
        None => (None, nodes, tail),
    };
    // The chain reads the checked collection too, kept before the body's closure.
    quote_spanned! {Span::mixed_site()=> {
        #checked
        let __aqueduct_fan_out = __aqueduct_builder.#fan_out(
            #node_name,
            __aqueduct_collection,
            ::core::stringify!(#item),
            (#(#imports,)*),
            |__aqueduct_builder, #item_handle, (#(#imports,)*)| {
                #top
                #nodes
                #unread
                #tail
            },
        );
        #cap
        __aqueduct_fan_out
    }}
}

/// `__aqueduct_builder.subflow(…)` for another workflow run as one node; its inputs
/// are checked against its parameters by `Arguments`.
fn emit_subflow(call: &Call, node_name: &str, p: &TokenStream) -> TokenStream {
    let path = &call.task;
    let roots = call.args.iter().map(|arg| handle(&arg.root));
    let builder = Ident::new("__aqueduct_builder", Span::mixed_site());
    // Its inputs are shared with this workflow: it may not take a parameter by value.
    // An item, which rustc evaluates even where it only checks the code.
    let workflow = quote_spanned! {path.span()=> {
        const _: () = ::core::assert!(
            !<#path as #p::Subflow>::MOVES_PARAMS,
            "this workflow moves one of its parameters into a task (passes it without `&`), \
             so it cannot run as another workflow's node, whose inputs are shared: have \
             it share the parameter (`&param`) instead"
        );
        <#path as #p::Subflow>::built_for(#builder.fakes())
    }};
    let mut inputs = Group::new(Delimiter::Parenthesis, quote!(#(#roots,)*));
    inputs.set_span(call.paren);
    quote_spanned! {Span::mixed_site()=> {
        let __aqueduct_workflow = #workflow;
        __aqueduct_builder.subflow(#node_name, &*__aqueduct_workflow, #inputs)
    }}
}
