package udp_test

import (
	"context"
	"net"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/internal/benchratio"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/udp"
)

// BenchmarkUDPvsInProcess: what the UDP convention costs per round trip. One
// softkey is served twice, in-process (expose.InProcess, CTAPHID over the memory
// pipe) and by ServeUDP on loopback, and the same request goes through both,
// alternating, in one run. x-inprocess is the ratio of the median times, so
// machine load moves both sides alike; udp-ns and inprocess-ns are the medians
// (ns/op counts one of each).
//
//	go test -run '^$' -bench UDPvsInProcess ./transport/udp
func BenchmarkUDPvsInProcess(b *testing.B) {
	ctx := context.Background()
	auth, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{})
	if err != nil {
		b.Fatal(err)
	}
	local, err := expose.InProcess(ctx, auth, expose.InProcessOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer local.Close() // closes auth, after the UDP side below has stopped
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- expose.ServeUDP(serveCtx, auth, conn, expose.UDPOptions{}) }()
	defer func() {
		stop()
		<-served
		conn.Close()
	}()
	remote, err := udp.Open(ctx, conn.LocalAddr().String(), udp.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer remote.Close()

	id, _ := register(b, ctap2.NewClient(local), "bench")
	req := &ctap2.GetAssertionRequest{
		RPID:           "example.com",
		ClientDataHash: make([]byte, 32),
		AllowList:      []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: id}},
	}
	ops := map[string]func(dev transport.Device) func(){
		"getAssertion": func(dev transport.Device) func() {
			c := ctap2.NewClient(dev)
			return func() {
				if _, err := c.GetAssertion(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		},
		"ping0": func(dev transport.Device) func() {
			return func() {
				if _, err := dev.Transact(ctx, transport.CmdPing, nil); err != nil {
					b.Fatal(err)
				}
			}
		},
	}
	for _, name := range []string{"getAssertion", "ping0"} {
		b.Run(name, func(b *testing.B) {
			overUDP, inProcess := ops[name](remote), ops[name](local)
			overUDP() // warm up both paths
			inProcess()
			benchratio.Compare(b, overUDP, inProcess).Report(b, "x-inprocess", "udp", "inprocess")
		})
	}
}
