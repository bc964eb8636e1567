//! The [`Scope`] of a statement: the names it may read, and a clear error, at the
//! user's token, for each one it may not.

use std::collections::HashMap;

use proc_macro2::Ident;
use syn::Pat;

use crate::errors::{Errors, closest};

/// The names a statement can read: parameters and earlier bindings, and in a loop's
/// body its item and the enclosing scope's names.
#[derive(Default)]
pub(super) struct Scope {
    defined: HashMap<String, Ident>,
    /// Every binding of the body, to tell "defined later" from "not defined".
    later: HashMap<String, Ident>,
    /// In a loop's body: the names of the enclosing scopes, readable as imports.
    outer: HashMap<String, Ident>,
    /// The enclosing names this body read, in first-use order.
    imports: Vec<Ident>,
    /// The items of this loop and of the loops around it: passed without `&`.
    items: Vec<String>,
    /// Names bound inside loops of this scope, for a clear error when used outside.
    inner: HashMap<String, Ident>,
}

impl Scope {
    /// Notes a binding of the body before its statements are read, so a use before its
    /// `let` can point at it.
    pub(super) fn bind_later(&mut self, ident: &Ident) {
        self.later
            .entry(ident.to_string())
            .or_insert_with(|| ident.clone());
    }

    /// The scope of a loop's body inside this one. When the loop's `pattern` was
    /// rejected (`item` is `None`), its names still count as items, so their uses raise
    /// no more errors.
    pub(super) fn enter(&self, item: Option<&Ident>, pattern: &Pat) -> Scope {
        let mut outer = self.outer.clone();
        outer.extend(
            self.defined
                .iter()
                .map(|(name, ident)| (name.clone(), ident.clone())),
        );
        let mut inner = Scope {
            outer,
            later: self.later.clone(),
            items: self.items.clone(),
            ..Scope::default()
        };
        if let Some(item) = item {
            inner.items.push(item.to_string());
            inner.defined.insert(item.to_string(), item.clone());
        } else {
            let mut rejected = Scope::default();
            rejected.define_all(pattern);
            for (name, ident) in rejected.defined {
                inner.items.push(name.clone());
                inner.defined.insert(name, ident);
            }
        }
        inner
    }

    /// Back from a loop's body: its names stay inside, its imports from beyond this
    /// scope become this scope's imports too. Returns the body's imports.
    pub(super) fn leave(&mut self, body: Scope, errors: &mut Errors) -> Vec<Ident> {
        for (name, ident) in body.defined.into_iter().chain(body.inner) {
            self.inner.entry(name).or_insert(ident);
        }
        for import in &body.imports {
            self.check(import, None, errors);
        }
        body.imports
    }

    pub(super) fn is_item(&self, ident: &Ident) -> bool {
        self.items.contains(&ident.to_string())
    }

    /// Whether `ident` is bound inside a loop of this scope (and so not readable here).
    pub(super) fn is_inner(&self, ident: &Ident) -> bool {
        self.inner.contains_key(&ident.to_string())
    }

    pub(super) fn define(&mut self, ident: &Ident, errors: &mut Errors) {
        if let Some(first) = self.defined.get(&ident.to_string()) {
            let mut error = syn::Error::new(
                ident.span(),
                format!(
                    "`{ident}` is already defined: every node of a workflow needs its own name"
                ),
            );
            error.combine(syn::Error::new(
                first.span(),
                format!("`{ident}` is first defined here"),
            ));
            errors.push(error);
        } else {
            self.defined.insert(ident.to_string(), ident.clone());
        }
    }

    /// Defines every name a rejected pattern binds, so its mistake is reported once
    /// rather than again at every use.
    pub(super) fn define_all(&mut self, pat: &Pat) {
        match pat {
            Pat::Ident(p) => {
                self.defined
                    .entry(p.ident.to_string())
                    .or_insert_with(|| p.ident.clone());
            }
            Pat::Tuple(tuple) => tuple.elems.iter().for_each(|p| self.define_all(p)),
            Pat::TupleStruct(tuple) => tuple.elems.iter().for_each(|p| self.define_all(p)),
            Pat::Struct(s) => s.fields.iter().for_each(|f| self.define_all(&f.pat)),
            Pat::Type(typed) => self.define_all(&typed.pat),
            Pat::Reference(reference) => self.define_all(&reference.pat),
            _ => {}
        }
    }

    /// Checks that `ident`, read by the node bound to `reader`, is already defined.
    pub(super) fn check(&mut self, ident: &Ident, reader: Option<&Ident>, errors: &mut Errors) {
        let name = ident.to_string();
        if self.defined.contains_key(&name) {
            return;
        }
        if self.outer.contains_key(&name) {
            if !self.imports.iter().any(|import| *import == name) {
                self.imports.push(ident.clone());
            }
            return;
        }
        if let Some(inside) = self.inner.get(&name) {
            let mut error = syn::Error::new(
                ident.span(),
                format!("`{ident}` exists only inside its loop: use the loop's result instead"),
            );
            error.combine(syn::Error::new(
                inside.span(),
                format!("`{ident}` is bound here, inside a `for`"),
            ));
            return errors.push(error);
        }
        if reader.is_some_and(|reader| *reader == name) {
            errors.at(
                ident,
                format!("`{ident}` is this task's own output: a task cannot read what it produces (no cycles)"),
            );
        } else if let Some(later) = self.later.get(&name) {
            let mut error = syn::Error::new(
                ident.span(),
                format!(
                    "`{ident}` is used before it is defined: move this statement after `let {ident}` \
                     (inputs must be defined first, so a workflow cannot have a cycle)"
                ),
            );
            error.combine(syn::Error::new(
                later.span(),
                format!("`{ident}` is defined here"),
            ));
            errors.push(error);
        } else {
            let mut message = format!(
                "cannot find `{ident}`: a task input must be a workflow parameter or an earlier `let` binding"
            );
            if let Some(close) = self.similar(&name) {
                message.push_str(&format!("; did you mean `{close}`?"));
            }
            errors.at(ident, message);
        }
    }

    fn similar(&self, name: &str) -> Option<&str> {
        closest(name, self.defined.keys().map(String::as_str))
    }
}
