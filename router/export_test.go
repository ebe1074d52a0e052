package router

// FastServed is how many requests rt's fast path proxied.
func FastServed(rt *Router) uint64 { return rt.fastServed.Load() }
