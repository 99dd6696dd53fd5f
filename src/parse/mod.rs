//! Parsers for the text of /proc files. A parser never opens a file: fixture
//! text and live text go through the same code.
