//! A task's fakes: its signature as a trait object (`Task::Call`), which its fakes are,
//! the fake constructor `name::fake(f)`, and the look for a fake in force that begins
//! the function's body (see `__private::Callee`).

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{FnArg, ItemFn, Lifetime, Pat, Type};

/// The task's function, its body begun with a look for a fake in force: with one, the
/// function returns the fake's result for its inputs. Parameters that are patterns
/// (not plain names) get names of their own, and the body binds the patterns.
pub(crate) fn with_fake_check(item: &ItemFn, is_async: bool, p: &TokenStream) -> ItemFn {
    let mut item = item.clone();
    let name = item.sig.ident.clone();
    let mut args = Vec::new();
    let mut binds: Vec<syn::Stmt> = Vec::new();
    for (i, input) in item.sig.inputs.iter_mut().enumerate() {
        let FnArg::Typed(typed) = input else { continue };
        match &*typed.pat {
            Pat::Ident(ident) if ident.by_ref.is_none() && ident.subpat.is_none() => {
                args.push(ident.ident.clone());
            }
            _ => {
                let arg = format_ident!("__aqueduct_arg{i}", span = Span::mixed_site());
                let pat = std::mem::replace(
                    &mut *typed.pat,
                    Pat::Ident(syn::PatIdent {
                        attrs: Vec::new(),
                        by_ref: None,
                        mutability: None,
                        ident: arg.clone(),
                        subpat: None,
                    }),
                );
                binds.push(syn::parse_quote!(let #pat = #arg;));
                args.push(arg);
            }
        }
    }
    let fake = format_ident!("__aqueduct_fake", span = Span::mixed_site());
    let call = if is_async {
        quote!(#fake(#(#args),*).await)
    } else {
        quote!(#fake(#(#args),*))
    };
    // Put before the body's own statements, in its own braces: its spans, and how
    // rustc reads it (a one-expression body is no block in a block), stay the user's.
    let check: syn::Stmt = syn::parse_quote! {
        if let ::core::option::Option::Some(#fake) = #p::fake_of::<#name>() {
            return #call;
        }
    };
    let prelude: Vec<syn::Stmt> = std::iter::once(check).chain(binds).collect();
    item.block.stmts.splice(0..0, prelude);
    item
}

/// The pieces of a task's expansion that make it callable through `Task::Call`.
pub(crate) struct CallItems {
    /// `type Call` and `const CALL`, inside the `impl Task`.
    pub(crate) in_task: TokenStream,
    /// `impl name { pub fn fake(…) -> Fake }`.
    pub(crate) fake: TokenStream,
}

/// The `Call` items of the task `item`, returning `ret`; `p` is the private path.
pub(crate) fn call_items(item: &ItemFn, ret: &Type, is_async: bool, p: &TokenStream) -> CallItems {
    let (vis, name) = (&item.vis, &item.sig.ident);
    let types: Vec<&Type> = item
        .sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(typed) => Some(&*typed.ty),
            FnArg::Receiver(_) => None,
        })
        .collect();
    // Hygienic: a task named like one of them is still the one called.
    let args: Vec<_> = (0..types.len())
        .map(|i| format_ident!("__aqueduct_arg{i}", span = Span::mixed_site()))
        .collect();
    let fake_doc = format!(
        "A fake of task `{name}` for a workflow's `with_fakes`: `call` takes the task's \
         inputs and returns what it returns{}. See `aqueduct::fake`.",
        if is_async {
            " (a future of it, which owns what it uses)"
        } else {
            ""
        }
    );
    // At the task's name: a fake of another signature is told the bound is the task's.
    let span = name.span();
    if !is_async {
        let bound = quote_spanned! {span=>
            ::core::ops::Fn(#(#types),*) -> #ret
                + ::core::marker::Send + ::core::marker::Sync + 'static
        };
        return CallItems {
            in_task: quote! {
                type Call = dyn ::core::ops::Fn(#(#types),*) -> #ret
                    + ::core::marker::Send + ::core::marker::Sync;
            },
            fake: quote! {
                impl #name {
                    #[doc = #fake_doc]
                    #[allow(dead_code)]
                    #vis fn fake(call: impl #bound) -> #p::Fake {
                        <#name as #p::HasMarker>::MARKER.fake(#p::Arc::new(call))
                    }
                }
            },
        };
    }
    // An async task's future borrows its inputs: one lifetime for all of them, which
    // the boxed future may hold.
    let lifetime = Lifetime::new("'__aqueduct_in", Span::mixed_site());
    let mut borrows = false;
    let named: Vec<Type> = types
        .iter()
        .map(|ty| match ty {
            Type::Reference(reference)
                if reference
                    .lifetime
                    .as_ref()
                    .is_none_or(|lifetime| lifetime.ident == "_") =>
            {
                borrows = true;
                let mut reference = reference.clone();
                reference.lifetime = Some(lifetime.clone());
                Type::Reference(reference)
            }
            ty => (*ty).clone(),
        })
        .collect();
    let (binder, bound) = if borrows {
        (quote!(for<#lifetime>), quote!(#lifetime))
    } else {
        (TokenStream::new(), quote!('static))
    };
    let boxed = quote! {
        #p::Pin<::std::boxed::Box<
            dyn ::core::future::Future<Output = #ret> + ::core::marker::Send + #bound
        >>
    };
    let bound = quote_spanned! {span=>
        ::core::ops::Fn(#(#types),*) -> F + ::core::marker::Send + ::core::marker::Sync + 'static
    };
    let future = quote_spanned! {span=>
        ::core::future::Future<Output = #ret> + ::core::marker::Send + 'static
    };
    CallItems {
        in_task: quote! {
            type Call = dyn #binder ::core::ops::Fn(#(#named),*) -> #boxed
                + ::core::marker::Send + ::core::marker::Sync;
        },
        fake: quote! {
            impl #name {
                #[doc = #fake_doc]
                #[allow(dead_code)]
                #vis fn fake<F>(call: impl #bound) -> #p::Fake
                where
                    F: #future,
                {
                    let call: #p::Arc<<#name as #p::Task>::Call> = #p::Arc::new(
                        move |#(#args),*| ::std::boxed::Box::pin(call(#(#args),*))
                    );
                    <#name as #p::HasMarker>::MARKER.fake(call)
                }
            }
        },
    }
}
