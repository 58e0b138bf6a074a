"""The linear case of Amit (2019): does updating the feedback weights speed learning?  # SPEC §8

Statements, proofs, and what is proved, conjectured or measured: theory/README.md.

    theory.flow        population gradient flow of deep linear nets (bp, frfb, urfb), solve_ivp
    theory.identities  the exact identities (energy rate, urfb split, conservation) as checks
    theory.theorems    T1-T4: urfb's conservation law, frfb's invariant, the aligned-mode theorem
                       with its closed forms, stationary points; their numerical checks
    theory.instances   random teachers, widths and initial W, R
    theory.ensemble    many instances: time to reach a fraction ε of the initial error
    theory.sgd         discrete SGD on finite samples through hebbref's own Dense layers
    theory.report      Markdown report, PNG plots and summary.json
    python -m theory   (or ``hebbref theory``) runs it all
"""
