package xmppsession

// Connected reports whether the session has a live connection.
func (s *Session) Connected() bool { return s.State().State == StateConnected }
