//! Traffic replay: a data set as live traffic, with a drift schedule and delayed labels.
