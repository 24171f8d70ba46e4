//! Alert rules over metrics, drift and accuracy; firing and resolving.
