//! The [`Scope`] of a statement: the names it may read, and a clear error, at the
//! user's token, for each one it may not.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use proc_macro2::Ident;
use syn::Pat;

use super::Part;
use crate::errors::{Errors, closest};

/// What an `if` without `else` moves its arm's value into.
pub(super) const OPTION_VALUE: &str = "the value of the `if` (an `Option`)";

/// Ids of scopes, so two arms' names that are spelled alike stay apart.
static SCOPES: AtomicU32 = AtomicU32::new(1);

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
    /// The items of the borrowing loops (`for item in &collection`) around this
    /// scope: references already, passed without `&` and shared.
    items: Vec<String>,
    /// Every read of a name, in order: what [`check_moves`](Self::check_moves) checks.
    reads: Vec<Read>,
    /// In a loop's body: its item's name.
    own_item: Option<String>,
    /// Names bound inside loops or arms of this scope, for a clear error when used
    /// outside: the name, and what it is bound inside (`a \`for\``, `an arm`).
    inner: HashMap<String, (Ident, &'static str)>,
    /// This scope's id; an arm's scope has its own.
    id: u32,
    /// Per name this scope can read, the id of the scope that bound it.
    owners: HashMap<String, u32>,
    /// The parts the `match` arms around this scope bound.
    parts: HashMap<String, Rc<Part>>,
    /// In an arm: the names the arm bound itself.
    arm_own: Vec<String>,
    /// The branches bound in this scope, for the moves through their value.
    branches: Vec<BranchTails>,
    /// The arms this scope is in, outermost first: (branch id, arm).
    arms: Vec<(u32, u32)>,
    /// How many `for` bodies deep this scope is.
    depth: u32,
}

/// A branch's binding and id: moving the binding moves the value of the arm it took, so
/// each arm's value (the reads that carry the id) is moved too.
struct BranchTails {
    binding: String,
    owner: u32,
    id: u32,
}

/// One read of a name by a task, a loop or the tail.
struct Read {
    ident: Ident,
    /// Whether the name was this scope's own when read (not an enclosing scope's that a
    /// later `let` of the body shadows).
    own: bool,
    /// `Some(what)` if the value is moved into `what` (a task, or a `for`).
    moved_into: Option<String>,
    /// Whether it is read inside a loop's body, so once per item.
    in_loop: bool,
    /// Whether it is the workflow's output (its tail).
    tail: bool,
    /// The id of the scope that bound the name.
    owner: u32,
    /// The arms the read is in, outermost first: two reads in different arms of one
    /// branch never both happen.
    arms: Vec<(u32, u32)>,
    /// For an arm's value: the branch's id.
    value_of: Option<u32>,
}

impl Read {
    /// Whether this read and `other` can never both happen: they are in different arms
    /// of one branch.
    fn exclusive(&self, other: &Read) -> bool {
        self.arms
            .iter()
            .any(|&(branch, arm)| other.arms.iter().any(|&(b, a)| b == branch && a != arm))
    }
}

impl Scope {
    /// A scope of its own id: the workflow's, a loop body's or an arm's.
    pub(super) fn fresh() -> Scope {
        Scope {
            id: SCOPES.fetch_add(1, Ordering::Relaxed),
            ..Scope::default()
        }
    }

    /// An id for a branch, to tell its arms apart.
    pub(super) fn branch_id() -> u32 {
        SCOPES.fetch_add(1, Ordering::Relaxed)
    }

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
    pub(super) fn enter(&self, item: Option<&Ident>, pattern: &Pat, by_value: bool) -> Scope {
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
            parts: self.parts.clone(),
            arms: self.arms.clone(),
            depth: self.depth + 1,
            ..Scope::fresh()
        };
        inner.owners = self.owners.clone();
        inner.own_item = item.map(ToString::to_string);
        if let Some(item) = item {
            // A taken collection's item is the body's own value, like a binding, even
            // if a borrowed item around it has its name.
            inner.items.retain(|name| item != name);
            if !by_value {
                inner.items.push(item.to_string());
            }
            inner.defined.insert(item.to_string(), item.clone());
            inner.parts.remove(&item.to_string());
            inner.owners.insert(item.to_string(), inner.id);
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
    pub(super) fn leave(&mut self, mut body: Scope, errors: &mut Errors) -> Vec<Ident> {
        // The body's own names are read nowhere else: check their moves now. Reads of
        // enclosing names happen once per item.
        let (own, outer): (Vec<Read>, Vec<Read>) = std::mem::take(&mut body.reads)
            .into_iter()
            .partition(|read| read.own);
        check_moves(own, &body.branches, errors);
        self.reads.extend(outer.into_iter().map(|read| Read {
            in_loop: true,
            own: self.defined.contains_key(&read.ident.to_string()),
            ..read
        }));
        let bound = body
            .defined
            .into_iter()
            .map(|(name, ident)| (name, (ident, "a `for`")));
        for (name, inside) in bound.chain(body.inner) {
            self.inner.entry(name).or_insert(inside);
        }
        for import in &body.imports {
            self.check(import, None, errors);
        }
        body.imports
    }

    /// The scope of an arm of a branch in this one: the same graph, so every name of
    /// this scope is readable as it is here; the names the arm binds stay inside it.
    pub(super) fn enter_arm(&self, branch: u32, arm: u32) -> Scope {
        let mut arms = self.arms.clone();
        arms.push((branch, arm));
        Scope {
            arms,
            defined: self.defined.clone(),
            later: self.later.clone(),
            outer: self.outer.clone(),
            items: self.items.clone(),
            own_item: self.own_item.clone(),
            inner: self.inner.clone(),
            owners: self.owners.clone(),
            parts: self.parts.clone(),
            depth: self.depth,
            ..Scope::fresh()
        }
    }

    /// Back from an arm: its reads are this scope's (the same graph), its own names stay
    /// inside, its imports from beyond this scope become this scope's.
    pub(super) fn leave_arm(&mut self, mut arm: Scope, errors: &mut Errors) {
        self.reads.append(&mut arm.reads);
        self.branches.append(&mut arm.branches);
        for name in arm.arm_own {
            if let Some(ident) = arm.defined.get(&name) {
                self.inner
                    .entry(name)
                    .or_insert_with(|| (ident.clone(), "an arm of an `if` or `match`"));
            }
        }
        for (name, inside) in arm.inner {
            self.inner.entry(name).or_insert(inside);
        }
        for import in &arm.imports {
            self.check(import, None, errors);
        }
    }

    /// Binds a part a `match` arm's pattern binds (`text` in `Kind::Csv(text) => …`):
    /// shared bare, like a borrowing loop's item.
    /// A part may shadow a binding of the enclosing scopes, as a pattern's binding does
    /// in Rust: inside the arm, the name is the part.
    pub(super) fn define_part(&mut self, ident: &Ident, part: Rc<Part>) {
        let name = ident.to_string();
        self.defined.insert(name.clone(), ident.clone());
        self.owners.insert(name.clone(), self.id);
        self.arm_own.push(name.clone());
        self.items.push(name.clone());
        self.parts.insert(name, part);
    }

    /// How many `for` bodies deep this scope is.
    pub(super) fn depth(&self) -> u32 {
        self.depth
    }

    /// The part `ident` names, if a `match` arm around this scope bound it.
    pub(super) fn part(&self, ident: &Ident) -> Option<Rc<Part>> {
        self.parts.get(&ident.to_string()).cloned()
    }

    /// Whether `ident` names something this scope can read: a parameter, a binding, an
    /// item, a part, or an enclosing scope's name.
    pub(super) fn knows(&self, ident: &Ident) -> bool {
        let name = ident.to_string();
        self.defined.contains_key(&name) || self.outer.contains_key(&name)
    }

    /// Notes branch `id` bound here to `binding`: moving the binding moves its arms'
    /// values.
    pub(super) fn bind_branch(&mut self, binding: &Ident, id: u32) {
        let owner = self.owner_of(binding);
        self.branches.push(BranchTails {
            binding: binding.to_string(),
            owner,
            id,
        });
    }

    /// Notes that `ident` is the value of an arm of branch `branch` (moved into it, if
    /// `moved_into`).
    pub(super) fn read_as_value_of(
        &mut self,
        ident: &Ident,
        moved_into: Option<String>,
        branch: u32,
    ) {
        self.read(ident, moved_into);
        if let Some(read) = self.reads.last_mut() {
            read.value_of = Some(branch);
        }
    }

    /// The id of the scope that bound `ident`, as read here.
    pub(super) fn owner_of(&self, ident: &Ident) -> u32 {
        self.owners
            .get(&ident.to_string())
            .copied()
            .unwrap_or(self.id)
    }

    /// Whether `ident` is the item of a borrowing loop: a reference, shared bare.
    pub(super) fn is_borrowed_item(&self, ident: &Ident) -> bool {
        self.items.contains(&ident.to_string())
    }

    /// Whether `ident` names a node bound in this body by a `let` (not its item, not an
    /// enclosing scope's name).
    pub(super) fn is_own_binding(&self, ident: &Ident) -> bool {
        self.defined.contains_key(&ident.to_string())
            && self.own_item.as_deref() != Some(&ident.to_string())
    }

    /// Notes a read of `ident`: moved into `moved_into`, or shared.
    pub(super) fn read(&mut self, ident: &Ident, moved_into: Option<String>) {
        // A part is read through the binding it is a part of.
        if let Some(part) = self.part(ident) {
            let root = super::at_span(&part.root, ident.span());
            // In a loop's body, a part of a binding outside it imports that binding.
            let name = root.to_string();
            if !self.defined.contains_key(&name)
                && self.outer.contains_key(&name)
                && !self.imports.iter().any(|import| *import == name)
            {
                self.imports.push(root.clone());
            }
            return self.read_binding(&root, None);
        }
        self.read_binding(ident, moved_into);
    }

    /// Notes a read of the binding `ident` (never a part: a part may shadow the binding
    /// it is a part of).
    fn read_binding(&mut self, ident: &Ident, moved_into: Option<String>) {
        let name = ident.to_string();
        self.reads.push(Read {
            ident: ident.clone(),
            own: self.defined.contains_key(&name),
            moved_into,
            in_loop: false,
            tail: false,
            owner: self.owners.get(&name).copied().unwrap_or(self.id),
            arms: self.arms.clone(),
            value_of: None,
        });
    }

    /// Notes that `ident` is the workflow's output.
    pub(super) fn read_as_output(&mut self, ident: &Ident) {
        self.read(ident, None);
        if let Some(read) = self.reads.last_mut() {
            read.tail = true;
        }
    }

    /// The reads that move one of `names` into a task: each token, and the task.
    pub(super) fn moves_of<'s>(
        &'s self,
        names: &'s [Ident],
    ) -> impl Iterator<Item = (&'s Ident, &'s str)> + 's {
        self.reads.iter().filter_map(move |read| {
            let moved = read.moved_into.as_deref().filter(|_| read.own)?;
            names.contains(&read.ident).then_some((&read.ident, moved))
        })
    }

    /// Whether the workflow moves one of `params` into a task or a `for` (then it cannot
    /// run as another workflow's node, whose inputs it would share).
    pub(super) fn moves_param(&self, params: &[(Ident, syn::Type)]) -> bool {
        self.reads.iter().any(|read| {
            read.own && read.moved_into.is_some() && params.iter().any(|(p, _)| *p == read.ident)
        })
    }

    /// Checks the moves of the workflow's own names, once its body is read.
    pub(super) fn check_moves(&mut self, errors: &mut Errors) {
        let reads = std::mem::take(&mut self.reads);
        let own = reads.into_iter().filter(|read| read.own).collect();
        check_moves(own, &self.branches, errors);
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
            // A binding named like an enclosing loop's item is a value of its own.
            self.items.retain(|name| ident != name);
            self.defined.insert(ident.to_string(), ident.clone());
            self.owners.insert(ident.to_string(), self.id);
            self.arm_own.push(ident.to_string());
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
        if let Some((inside, what)) = self.inner.get(&name) {
            let (only, instead) = if what.starts_with("a `for`") {
                ("its loop", "use the loop's result instead")
            } else {
                (
                    "its arm",
                    "use the value of the `if` or `match` instead, or read it inside the arm",
                )
            };
            let mut error = syn::Error::new(
                ident.span(),
                format!("`{ident}` exists only inside {only}: {instead}"),
            );
            error.combine(syn::Error::new(
                inside.span(),
                format!("`{ident}` is bound here, inside {what}"),
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

/// A name moved into a task or a loop has that one reader: every other read of it, or
/// a move inside a loop's body (once per item), is an error at both tokens.
fn check_moves(mut reads: Vec<Read>, branches: &[BranchTails], errors: &mut Errors) {
    // Moving a branch's value moves the value of the arm it took: each arm's value is
    // then moved too, into the branch, and has no other reader.
    let mut moved: Vec<u32> = Vec::new();
    loop {
        let mut more = false;
        for branch in branches {
            let is_moved = reads.iter().any(|r| {
                r.moved_into.is_some() && r.ident == branch.binding && r.owner == branch.owner
            });
            if !is_moved || moved.contains(&branch.id) {
                continue;
            }
            moved.push(branch.id);
            more = true;
            for read in reads.iter_mut().filter(|r| r.value_of == Some(branch.id)) {
                read.moved_into.get_or_insert_with(|| {
                    format!(
                        "`{}`, the value of its `if` or `match`, which is moved on",
                        branch.binding
                    )
                });
            }
        }
        if !more {
            break;
        }
    }
    let mut names: Vec<(String, u32)> = Vec::new();
    for read in &reads {
        let name = (read.ident.to_string(), read.owner);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    for (name, owner) in names {
        let of_name: Vec<&Read> = reads
            .iter()
            .filter(|r| r.ident == name && r.owner == owner)
            .collect();
        // Every move against every other read: moves in arms of one branch that exclude
        // each other are one move (only one of them runs); any other pair is a mistake.
        let moves = of_name.iter().copied().filter(|r| r.moved_into.is_some());
        let in_loop = moves.clone().find(|r| r.in_loop);
        let pair = moves.clone().find_map(|moved| {
            let conflict = |r: &&Read| {
                let one_of_two_moves = r.moved_into.is_some() && r.exclusive(moved);
                !(std::ptr::eq(*r, moved) || one_of_two_moves)
            };
            of_name
                .iter()
                .copied()
                .find(conflict)
                .map(|other| (moved, other))
        });
        let Some(moved) = in_loop.or(pair.map(|(moved, _)| moved)) else {
            continue;
        };
        let into = moved.moved_into.as_deref().unwrap_or("a task");
        if moved.in_loop {
            errors.at(
                &moved.ident,
                format!(
                    "`{name}` is moved into {into} inside a `for` body, which runs once per \
                     item: share it with `&{name}`"
                ),
            );
            continue;
        }
        let Some((_, other)) = pair else { continue };
        let mut error = syn::Error::new(
            moved.ident.span(),
            format!("`{name}` is moved into {into} here"),
        );
        let again = if other.tail {
            format!(
                "… and returned here as the workflow's output: return what the task it is \
                 moved into makes, or share `&{name}` with that task"
            )
        } else if into.starts_with(OPTION_VALUE) {
            "… and also read here: an `if` without `else` moves its arm's value into its \
             `Option`; give the `if` an `else` (its value is then shared in place), or end the \
             arm with a task that makes the value"
                .to_owned()
        } else if other.exclusive(moved) {
            format!(
                "… and shared here, in another arm: the value is handed to its one reader as \
                 soon as it exists, whichever arm runs; move it in every arm, or share it \
                 (`&{name}`) in every arm"
            )
        } else if let Some(second) = &other.moved_into {
            format!(
                "… and moved into {second} here: a value moves once; share it with \
                 `&{name}` in both, or have a task make each its own"
            )
        } else {
            format!(
                "… and also read here: a moved value has one reader; share it with \
                 `&{name}` everywhere (the task it moves into taking `&T`), or move it only once"
            )
        };
        error.combine(syn::Error::new(other.ident.span(), again));
        errors.push(error);
    }
}
