//go:build race

package main

// raceEnabled: the race detector slows the backend several times over;
// scripts can check it as the [race] condition.
const raceEnabled = true
