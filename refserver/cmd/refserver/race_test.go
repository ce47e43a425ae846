//go:build race

package main

// raceFactor scales the memory bounds of a test binary built with -race: the race detector
// keeps shadow memory for every byte of heap the program touches, a few times its size.
const raceFactor = 3
