"""What the book's chapters read: the runs as frames, the paper's tables next to ours, the
claims with their verdicts, the diagnostics behind them, compute, and the figures.

Everything is driven by ``vgg.spec`` (``TABLES``, ``CLAIMS``, ``FUSIONS``, ``RUNS``); a run
folder is read only through ``vgg.rundir.RunDir``; nothing here trains or evaluates. The
functions return numbers and frames: the sentences around them are the chapters' Markdown,
which pastes the numbers with ``glue``. Chapters use ``from vgg import report as R``.

| module | what |
|---|---|
| ``frame`` | runs/ read into frames: one row per run, one per (run, result key); states; the book's profile |
| ``paper`` | the paper's numbers (vgg/reference/) |
| ``tables`` | Tables 3-7 from ``spec.TABLES``; fusion; display helpers |
| ``claims`` | ``spec.CLAIMS`` with paired intervals, verdicts, protocols and dense-context penalties |
| ``diagnostics`` | fit to the training crops; dense evaluation against a crop |
| ``compare`` | the compared profiles side by side: tables, verdicts, dense-context penalties |
| ``compute`` | cost, provenance, missing runs and the time they need |
| ``plots`` | the figures |
"""
from .claims import (BESIDE, EQUIV_MARGIN, PENALTY_Q, VERDICT_COLOURS, VERDICTS, bound, claim_protocol, claims,
                     claims_display, dense_penalty, penalty_text, side_protocol, verdict, verdict_counts,
                     verdict_table)
from .compute import (command, compute_table, gpu_cost, hours_left, provenance_table, run_date, table_sources, missing_results, missing_runs, missing_table,
                      reevaluation_table,
                      retrained_summary, retrained_table, study_compute, versions)
from .diagnostics import (HOLDOUT_NOISE, chain_histories, convergence_display, convergence_summary, convergence_table, lr_phases, dense_claims, dense_context_summary,
                          dense_context_table, dense_gap_table, dense_windows, fit_phrase, flat_phrase, fit_summary, fit_table,
                          last_map, score_map_side)
from .compare import (COMPARED, by_profile, compared_runs, epoch_cost, claims_by_profile, display_by_profile,
                      penalty_by_profile, profiles_in, table_by_profile, verdicts_by_profile)
from .frame import (HEADLINE, NOT_RUN, book_profile, study_complete, book_root, book_runs, eval_table, histories, load_runs, run_probs,
                    runs_root, scale_label, scan_runs)
from .paper import paper_gain, paper_results, paper_row, paper_text_number, paper_value
from .plots import claims_plot, dot_plot, profile_curves, fit_plot, plot_histories, training_curves
from .tables import (best_members, rank_summary, check_fusable, correct_by_seed, display_table, fmt, ours_text, same_images, show, summarize,
                     table, table7)

__all__ = ["NOT_RUN", "EQUIV_MARGIN", "VERDICTS", "HOLDOUT_NOISE",
           "book_root", "runs_root", "scan_runs", "load_runs", "eval_table", "histories", "run_probs",
           "book_profile", "book_runs", "scale_label",
           "paper_results", "paper_row", "paper_value", "paper_text_number", "paper_gain",
           "table", "table7", "rank_summary", "summarize", "correct_by_seed", "best_members", "same_images", "check_fusable", "ours_text",
           "display_table", "show", "fmt",
           "verdict", "claims", "verdict_counts", "bound", "claims_display", "verdict_table", "VERDICT_COLOURS",
           "PENALTY_Q", "BESIDE", "side_protocol", "claim_protocol", "dense_penalty", "penalty_text",
           "chain_histories", "fit_table", "fit_phrase", "flat_phrase", "fit_summary", "dense_gap_table", "dense_context_table",
           "dense_context_summary", "score_map_side", "dense_windows", "last_map", "dense_claims",
           "compute_table", "study_compute", "retrained_table", "retrained_summary", "reevaluation_table",
           "versions", "command", "missing_runs", "missing_table", "missing_results", "hours_left",
           "gpu_cost", "provenance_table", "run_date", "table_sources",
           "convergence_table", "convergence_display", "convergence_summary", "lr_phases",
           "COMPARED", "compared_runs", "profiles_in", "epoch_cost", "by_profile", "study_complete", "HEADLINE", "table_by_profile", "display_by_profile", "claims_by_profile",
           "verdicts_by_profile", "penalty_by_profile",
           "dot_plot", "profile_curves", "claims_plot", "plot_histories", "fit_plot", "training_curves"]
