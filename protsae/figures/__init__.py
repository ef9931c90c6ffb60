"""Figures: matplotlib, one function per figure, each writing a PNG atomically. Importing the
package selects the non-interactive Agg backend, so figures render on nodes without a display."""

import matplotlib

matplotlib.use("Agg")
