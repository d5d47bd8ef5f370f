// Xen Orchestra's incremental backup of one disk with CBT and NBD, step by
// step as @xen-orchestra/xapi/disks does it, with XO's own clients: npm
// xen-api 4.7.7 for XenAPI and @vates/nbd-client 3.6.0's MultiNbdClient
// (2 connections; STARTTLS when get_nbd_info gives a certificate).
//
// usage: node xo_incremental.mjs URL USER PASSWORD VDI_UUID IMAGE CYCLES
//
// Cycle 0 is the full backup: snapshot, read every 2 MiB block into IMAGE.
// Each later cycle snapshots, asks list_changed_blocks against the previous
// snapshot (by then only cbt_metadata), decodes one big-endian uint32 per
// 2 MiB block as XO does, reads exactly those blocks and patches them into
// IMAGE. After each cycle the script prints one JSON line and waits for a
// line on stdin (the test writes new data, or checks IMAGE against the
// snapshot, in between); then it data_destroys the snapshot it read and
// destroys the cbt_metadata before it, as XO's CBT-only retention does.
// Exits 1 on any error.
import { createClient } from 'xen-api'
import MultiNbdClient from '@vates/nbd-client/multi.mjs'
import { open } from 'node:fs/promises'
import { createInterface } from 'node:readline'

const BLOCK = 2 * 1024 * 1024
const [url, user, password, uuid, image, cycles] = process.argv.slice(2)
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
const xapi = createClient({ url, auth: { user, password }, allowUnauthorized: true })

// changedBlocks decodes list_changed_blocks' result as XO's XapiVhdCbt does.
function changedBlocks(base64) {
  const cbt = Buffer.from(base64, 'base64')
  if (cbt.length % 4 !== 0) throw new Error(`bitmap of ${cbt.length} bytes, not a multiple of 4`)
  const blocks = []
  for (let i = 0; i < cbt.length / 4; i++) if (cbt.readUInt32BE(i * 4) !== 0) blocks.push(i)
  return blocks
}

try {
  await xapi.connect()
  const ref = await xapi.call('VDI.get_by_uuid', uuid)
  if (!(await xapi.call('VDI.get_cbt_enabled', ref))) await xapi.call('VDI.enable_cbt', ref)
  const size = Number(await xapi.call('VDI.get_virtual_size', ref))
  const file = await open(image, 'w+')
  await file.truncate(size)
  let base // the previous snapshot, cbt_metadata once read
  for (let cycle = 0; cycle < Number(cycles); cycle++) {
    const snap = await xapi.callAsync('VDI.snapshot', ref, {})
    let blocks
    if (base === undefined) {
      blocks = Array.from({ length: Math.ceil(size / BLOCK) }, (_, i) => i)
    } else {
      blocks = changedBlocks(await xapi.callAsync('VDI.list_changed_blocks', base, snap))
    }
    const infos = await xapi.call('VDI.get_nbd_info', snap)
    const nbd = new MultiNbdClient(infos, { nbdConcurrency: 2 })
    await nbd.connect()
    if (nbd.exportSize !== BigInt(size)) throw new Error(`export size ${nbd.exportSize}, VDI ${size}`)
    // readBlocks yields the blocks' data in the order asked, reading ahead.
    let bytes = 0
    let k = 0
    for await (const data of nbd.readBlocks(function* () {
      for (const index of blocks) yield { index, size: BLOCK }
    })) {
      await file.write(data, 0, data.length, blocks[k++] * BLOCK)
      bytes += data.length
    }
    await nbd.disconnect()
    const snapUUID = await xapi.call('VDI.get_uuid', snap)
    console.log(JSON.stringify({ cycle, snapshot: snapUUID, blocks, bytes, nbd: infos }))
    const { done } = await lines.next()
    if (done) throw new Error('stdin closed')
    await xapi.callAsync('VDI.data_destroy', snap)
    if (base !== undefined) await xapi.call('VDI.destroy', base)
    base = snap
  }
  await file.close()
  console.log(JSON.stringify({ base_type: await xapi.call('VDI.get_type', base) }))
  await xapi.disconnect()
  process.exit(0)
} catch (error) {
  console.error('xo_incremental:', error)
  process.exit(1)
}
