package router

// FastServed is how many requests s's fast path proxied.
func FastServed(s *Server) uint64 { return s.fastServed() }
