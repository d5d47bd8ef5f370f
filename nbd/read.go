package nbd

// read answers READ. The data is read whole before anything is sent, so an
// error never follows a success header: it becomes the only chunk.
func (c *conn) read(r *request) *reply {
	n := int(r.length)
	rep := newReply(r.cost)
	if n == 0 {
		if c.structured {
			rep.chunk(replyFlagDone, chunkNone, r.cookie, 0)
		} else {
			rep.simple(0, r.cookie)
		}
		return rep
	}
	rep.data = getBuf(n)
	p := *rep.data
	var holes []piece // runs of p that read as zeros
	var onZero func(lo, hi int)
	if c.structured {
		onZero = func(lo, hi int) {
			if k := len(holes); k > 0 && lo < holes[k-1].hi {
				lo = holes[k-1].hi // overlapping or out of order: chunks must not overlap
			}
			if lo < 0 || hi > n || lo >= hi {
				return
			}
			if k := len(holes); k > 0 && holes[k-1].hi == lo {
				holes[k-1].hi = hi
				return
			}
			holes = append(holes, piece{lo: lo, hi: hi})
		}
	}
	if err := c.exp.ReadAt(p, r.off, onZero); err != nil {
		putBuf(rep.data)
		rep.data = nil
		rep.free()
		return c.errorReply(r, errnoOf(err), err.Error())
	}
	if !c.structured {
		rep.simple(0, r.cookie)
		rep.addData(0, n)
		return rep
	}
	if len(holes) == 1 && holes[0].lo == 0 && holes[0].hi == n {
		c.holeChunk(rep, r, 0, n, true)
		return rep
	}
	if len(holes) == 0 || r.flags&cmdFlagDF != 0 {
		rep.chunk(replyFlagDone, chunkOffsetData, r.cookie, uint32(8+n), r.off)
		rep.addData(0, n)
		return rep
	}
	// Alternate data and hole chunks; the last one carries DONE.
	at := 0
	emitData := func(lo, hi int, last bool) {
		rep.chunk(doneIf(last), chunkOffsetData, r.cookie, uint32(8+hi-lo), r.off+uint64(lo))
		rep.addData(lo, hi)
	}
	for i, h := range holes {
		if h.lo > at {
			emitData(at, h.lo, false)
		}
		last := i == len(holes)-1 && h.hi == n
		c.holeChunk(rep, r, h.lo, h.hi, last)
		at = h.hi
	}
	if at < n {
		emitData(at, n, true)
	}
	return rep
}

func (c *conn) holeChunk(rep *reply, r *request, lo, hi int, last bool) {
	rep.chunk(doneIf(last), chunkOffsetHole, r.cookie, 12, r.off+uint64(lo))
	at := len(rep.head)
	size := uint32(hi - lo)
	rep.head = append(rep.head, byte(size>>24), byte(size>>16), byte(size>>8), byte(size))
	rep.extendHead(at)
}

func doneIf(b bool) uint16 {
	if b {
		return replyFlagDone
	}
	return 0
}
