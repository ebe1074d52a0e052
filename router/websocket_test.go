package router_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/net/websocket"

	"github.com/pierpaas/pier/router"
)

// An open WebSocket stays with its backend when the route table moves the
// app to another; the next one goes to the new backend.
func TestWebSocketAcrossRouteChange(t *testing.T) {
	echo := func(name string) string {
		srv := httptest.NewServer(websocket.Handler(func(ws *websocket.Conn) {
			for {
				var msg string
				if websocket.Message.Receive(ws, &msg) != nil {
					return
				}
				if websocket.Message.Send(ws, name+":"+msg) != nil {
					return
				}
			}
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	one, two := echo("one"), echo("two")
	rt := router.New(router.Config{Domain: "pier.localhost"})
	rt.SetRoutes(map[string][]string{"chat": {one}})
	addr, _ := serve(t, rt)
	open := func() *websocket.Conn {
		t.Helper()
		cfg, err := websocket.NewConfig("ws://chat.pier.localhost/socket", "http://chat.pier.localhost/")
		if err != nil {
			t.Fatal(err)
		}
		ws, err := websocket.NewClient(cfg, dial(t, addr))
		if err != nil {
			t.Fatal(err)
		}
		return ws
	}
	say := func(ws *websocket.Conn, msg, want string) {
		t.Helper()
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil || got != want {
			t.Fatalf("got %q %v, want %q", got, err, want)
		}
	}
	first := open()
	say(first, "hello", "one:hello")
	rt.SetRoutes(map[string][]string{"chat": {two}})
	say(first, "still there?", "one:still there?")
	second := open()
	say(second, "hi", "two:hi")
	// Text that looks like a smuggling attempt is a message like any other.
	say(first, "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "one:POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
	say(second, "bye", "two:bye")
}
