//! A readable rendering of a compiled expression, for `provtrail filter --explain`.

use std::fmt::Write as _;

use crate::ast::{CompiledPath, Expr, Operand, Param, Slice, Token};

pub(crate) fn explain(p: &CompiledPath) -> String {
    let mut out = String::new();
    path(&mut out, p, 0);
    out
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn path(out: &mut String, p: &CompiledPath, depth: usize) {
    indent(out, depth);
    let kind = if p.definite { "definite" } else { "indefinite" };
    let _ = writeln!(
        out,
        "path {} ({kind}, from {})",
        p.render_from(None),
        if p.root == '$' { "root $" } else { "current @" }
    );
    for t in &p.tokens {
        indent(out, depth + 1);
        match t {
            Token::Property(names, _) => {
                let _ = writeln!(
                    out,
                    "property {}",
                    names
                        .iter()
                        .map(|n| format!("'{n}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Token::Index(ix) => {
                let _ = writeln!(
                    out,
                    "index {}",
                    ix.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
                );
            }
            Token::Slice(s) => {
                let _ = match s {
                    Slice::From(f) => writeln!(out, "slice from {f}"),
                    Slice::To(t) => writeln!(out, "slice to {t}"),
                    Slice::Between(f, t) => writeln!(out, "slice {f} to {t}"),
                };
            }
            Token::Wildcard => out.push_str("wildcard *\n"),
            Token::Scan => out.push_str("deep scan ..\n"),
            Token::Filter(e) => {
                out.push_str(
                    "filter (on an object: the object itself; on an array: each element)\n",
                );
                expr(out, e, depth + 2);
            }
            Token::Function(f) => {
                let _ = writeln!(out, "function {}()", f.name);
                for prm in &f.params {
                    match prm {
                        Param::Json(text, _) => {
                            indent(out, depth + 2);
                            let _ = writeln!(out, "argument {text}");
                        }
                        Param::Path(pp) => path(out, pp, depth + 2),
                    }
                }
            }
        }
    }
}

fn expr(out: &mut String, e: &Expr, depth: usize) {
    match e {
        Expr::Or(v) | Expr::And(v) => {
            indent(out, depth);
            out.push_str(if matches!(e, Expr::Or(_)) {
                "or\n"
            } else {
                "and\n"
            });
            for x in v {
                expr(out, x, depth + 1);
            }
        }
        Expr::Not(x) => {
            indent(out, depth);
            out.push_str("not\n");
            expr(out, x, depth + 1);
        }
        Expr::Rel(r) => {
            indent(out, depth);
            let _ = writeln!(out, "{}", r.op.as_str().to_lowercase());
            operand(out, &r.left, depth + 1);
            if r.op != crate::ast::RelOp::Exists {
                operand(out, &r.right, depth + 1);
            }
        }
    }
}

fn operand(out: &mut String, o: &Operand, depth: usize) {
    match o {
        Operand::Path(p) => {
            if p.exists_check {
                indent(out, depth);
                let _ = writeln!(
                    out,
                    "{}",
                    if p.should_exist {
                        "exists"
                    } else {
                        "does not exist"
                    }
                );
            }
            path(out, &p.path, depth);
        }
        _ => {
            indent(out, depth);
            let _ = match o {
                Operand::Str(s) => writeln!(out, "string {}", serde_json::Value::String(s.clone())),
                Operand::Num(d) => writeln!(out, "number {}", d.to_java_string()),
                Operand::Bool(b) => writeln!(out, "boolean {b}"),
                Operand::Null => writeln!(out, "null"),
                Operand::Json(j) => writeln!(out, "json {}", j.text),
                Operand::Pattern(p) => writeln!(out, "regex /{}/{}", p.source, p.flags),
                Operand::Path(_) => Ok(()),
            };
        }
    }
}
