// Xen Orchestra's client (npm xen-api 4.7.7) against vdiskd, as XO uses
// it for a CBT backup: connect (login, pool.get_all_records,
// system.listMethods, event.inject, get_all_records per class, the
// event.from loop), then VDI.get_by_uuid, VDI.enable_cbt, Async
// snapshots, Async list_changed_blocks, get_nbd_info, Async data_destroy,
// destroy. Prints one JSON line of what it saw; exits 1 on any error.
//
// usage: node xo_backup.mjs URL USER PASSWORD VDI_UUID
import { createClient } from 'xen-api'

const [url, user, password, uuid] = process.argv.slice(2)
const xapi = createClient({ url, auth: { user, password }, allowUnauthorized: true })
const seen = { add: [], update: [], remove: [] }
xapi.objects.on('add', objects => { for (const id in objects) seen.add.push(objects[id].$type + ':' + objects[id].$ref) })
xapi.objects.on('update', objects => { for (const id in objects) seen.update.push(objects[id].$type + ':' + objects[id].$ref) })
xapi.objects.on('remove', objects => { for (const id in objects) seen.remove.push(id) })
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
try {
  await xapi.connect()
  const out = { pool: xapi.pool.name_label }
  const ref = await xapi.call('VDI.get_by_uuid', uuid)
  await xapi.call('VDI.enable_cbt', ref)
  const base = await xapi.callAsync('VDI.snapshot', ref, {})
  out.cbt_enabled = await xapi.call('VDI.get_cbt_enabled', base)
  out.virtual_size = await xapi.call('VDI.get_virtual_size', ref)
  const next = await xapi.callAsync('VDI.snapshot', ref, {})
  out.bitmap = await xapi.callAsync('VDI.list_changed_blocks', base, next)
  out.nbd = await xapi.call('VDI.get_nbd_info', next)
  await xapi.callAsync('VDI.data_destroy', base)
  out.base_type = await xapi.call('VDI.get_type', base)
  await xapi.call('VDI.destroy', next)
  // The event loop reports what happened: wait (5 s at most) for the
  // destroyed snapshot's removal.
  const nextId = next.replace('OpaqueRef:', '')
  for (let i = 0; i < 50 && !seen.remove.includes(nextId) && !seen.remove.includes(next); i++) await sleep(100)
  Object.assign(out, { ref, base, next, seen })
  console.log(JSON.stringify(out))
  await xapi.disconnect()
  process.exit(0)
} catch (error) {
  console.error('xo_backup:', error)
  process.exit(1)
}
