"""What a finished run says: Table I and its files (metrics, the MEGC log, curves, confusion matrices), and how far
to trust its numbers (intervals over subjects, seeds, paired comparisons, the protocol audit)."""
