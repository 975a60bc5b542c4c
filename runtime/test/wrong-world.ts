/** Builds a real component of a world that is not ambit:filter (with wasm-tools, as bundled by jco). */
import { componentEmbed, componentNew } from '@bytecodealliance/jco-transpile/wasm-tools';

export async function wrongWorldComponent(): Promise<Uint8Array> {
  const witSource = 'package test:greeter;\nworld greeter {\n  export greet: func(name: string) -> string;\n}\n';
  return componentNew(await componentEmbed({ dummy: true, witSource, world: 'greeter' }));
}
