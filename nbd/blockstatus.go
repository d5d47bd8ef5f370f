package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// maxExtentLength is the longest descriptor: lengths are 32 bits, and
// splitting at a 64 KiB multiple keeps every piece aligned to any minimum
// block size and to the dirty-bitmap granularity.
const maxExtentLength = 1<<32 - 64<<10

// blockStatus answers BLOCK_STATUS with one chunk per selected context,
// each covering as much of the request as the backend reports (all of it,
// unless the extents exceed maxExtents), clamped to the request. Every
// context is gathered before anything is sent, so a failure is one error
// chunk and never a partial answer.
func (c *conn) blockStatus(r *request) *reply {
	rep := newReply(r.cost)
	one := r.flags&cmdFlagReqOne != 0
	end := r.off + uint64(r.length)
	for i, ctx := range c.meta {
		hdr := len(rep.head)
		rep.head = appendChunkHeader(rep.head, doneIf(i == len(c.meta)-1), chunkBlockStatus, r.cookie, 0)
		rep.head = binary.BigEndian.AppendUint32(rep.head, uint32(i+1))
		count := 0
		at := r.off
		err := c.exp.BlockStatus(ctx, r.off, uint64(r.length), func(length uint64, flags uint32) error {
			if length == 0 {
				return nil
			}
			length = min(length, end-at)
			for length > 0 {
				if count == maxExtents || (one && count == 1) {
					return ErrEnough
				}
				piece := min(length, maxExtentLength)
				rep.head = binary.BigEndian.AppendUint32(rep.head, uint32(piece))
				rep.head = binary.BigEndian.AppendUint32(rep.head, flags)
				count++
				at += piece
				length -= piece
			}
			if at >= end {
				return ErrEnough
			}
			return nil
		})
		if err != nil && !errors.Is(err, ErrEnough) {
			rep.free()
			return c.errorReply(r, errnoOf(err), err.Error())
		}
		if count == 0 {
			rep.free()
			return c.errorReply(r, EIO, fmt.Sprintf("no extents for %s", ctx))
		}
		// The chunk length (offset 16 of the header) is known now.
		binary.BigEndian.PutUint32(rep.head[hdr+16:], uint32(len(rep.head)-hdr-structuredHeaderLen))
		rep.extendHead(hdr)
	}
	return rep
}
