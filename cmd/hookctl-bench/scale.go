package main

import "errors"

func scale(o options) error { return errors.New("not yet") }
