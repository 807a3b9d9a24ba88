// Package tomlpos decodes TOML files into Go structs the way cairn's loaders need: every
// problem at once, each with file, line, column, key, what was expected and a hint, and the
// JSON Schema of the same structs from the same tags.
//
// It parses with go-toml v2, indexes the position of every key and value by its path
// ("container[1].ports[0]"), and decodes into structs driven by struct tags (see Decoder).
// It reads no files itself.
package tomlpos
