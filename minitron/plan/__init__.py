"""Will each stage fit, and how long will it take: per-stage memory and time plans (`minitron plan`)."""
