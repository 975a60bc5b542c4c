/**
 * Reads a classic pcap file (what `tcpdump -w` writes) of an Ethernet link into TCP/IPv4
 * segments with their payloads, so a test can say what crossed the wire.
 */
export interface TcpSegment {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  payload: Buffer;
}

const LINKTYPE_ETHERNET = 1;

export function tcpSegments(file: Buffer): TcpSegment[] {
  if (file.length < 24) throw new Error(`not a pcap file: ${file.length} bytes`);
  const magic = file.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!le && file.readUInt32BE(0) !== 0xa1b2c3d4 && file.readUInt32BE(0) !== 0xa1b23c4d) throw new Error('not a pcap file (bad magic)');
  const u32 = (o: number) => (le ? file.readUInt32LE(o) : file.readUInt32BE(o));
  const linkType = u32(20);
  if (linkType !== LINKTYPE_ETHERNET) throw new Error(`pcap link type ${linkType}, expected Ethernet`);
  const out: TcpSegment[] = [];
  for (let at = 24; at + 16 <= file.length;) {
    const captured = u32(at + 8);
    const frame = file.subarray(at + 16, at + 16 + captured);
    at += 16 + captured;
    if (frame.length < 14 + 20 || frame.readUInt16BE(12) !== 0x0800) continue; // IPv4 only
    const ip = frame.subarray(14);
    const ihl = (ip[0]! & 0x0f) * 4;
    if (ip[9] !== 6) continue; // TCP only
    const total = ip.readUInt16BE(2);
    const tcp = ip.subarray(ihl, total);
    const dataOffset = (tcp[12]! >> 4) * 4;
    out.push({
      src: `${ip[12]}.${ip[13]}.${ip[14]}.${ip[15]}`,
      dst: `${ip[16]}.${ip[17]}.${ip[18]}.${ip[19]}`,
      srcPort: tcp.readUInt16BE(0),
      dstPort: tcp.readUInt16BE(2),
      payload: tcp.subarray(dataOffset),
    });
  }
  return out;
}
