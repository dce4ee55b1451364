package store

import "fmt"

// BulkPutter is a Store that can insert many credentials in a few durable writes. A
// bulk load (an import, a capacity test, a benchmark) of 100,000 credentials costs
// a hundred fsyncs instead of 100,000.
type BulkPutter interface {
	PutCredentials(cs []*Credential) error
}

// PutCredentials stores its first bulkFirst credentials in one transaction, then
// doubles the size of each up to bulkMax. bbolt splits nodes only at commit, so an
// insert into a node that grew within the transaction moves all its entries: one
// transaction of 100,000 random keys takes over a minute. Once the tree has many
// leaves, larger transactions rewrite fewer pages per credential.
const (
	bulkFirst = 1000
	bulkMax   = 10000
)

var (
	_ BulkPutter = (*DB)(nil)
	_ BulkPutter = (*Memory)(nil)
)

// PutCredentials implements BulkPutter: PutCredential for each of cs, in order, in
// transactions of up to bulkMax credentials, each durable when it commits. Nothing is
// stored if any credential is invalid; after a write error the chunks before it
// stay stored.
func (d *DB) PutCredentials(cs []*Credential) error {
	for _, c := range cs {
		if err := c.validate(); err != nil {
			return fmt.Errorf("storing credentials: %w", err)
		}
	}
	for size := bulkFirst; len(cs) > 0; size = min(2*size, bulkMax) {
		chunk := cs[:min(size, len(cs))]
		cs = cs[len(chunk):]
		err := d.update(func(b buckets) error {
			for _, c := range chunk {
				if err := putTx(b, c); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("storing credentials: %w", err)
		}
	}
	return nil
}

// PutCredentials implements BulkPutter.
func (m *Memory) PutCredentials(cs []*Credential) error {
	for _, c := range cs {
		if err := c.validate(); err != nil {
			return fmt.Errorf("storing credentials: %w", err)
		}
	}
	for _, c := range cs {
		if err := m.PutCredential(c); err != nil {
			return err
		}
	}
	return nil
}
