//! Renderer tests: goldens of small rulesets, diffs that must equal full renders, restart
//! adoption, the kernel's own check when it can run, and a timing run at scale.

mod diff;
mod golden;
mod kernel;
mod scale;
