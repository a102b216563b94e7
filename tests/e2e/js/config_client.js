// Drives npm `nacos`'s NacosConfigClient for tests/e2e/test_nacos_config.py.
// Usage: node config_client.js <servers> <namespace|-> <mode> <dataId> <group> [content]
//   crud:      publishSingle, getConfig, remove, getConfig; prints one JSON line
//   subscribe: prints {"content": ...} for every change the listener sees, until stdin closes
'use strict';
const { NacosConfigClient } = require('nacos');

async function main() {
  const [servers, namespace, mode, dataId, group, content] = process.argv.slice(2);
  const client = new NacosConfigClient({
    serverAddr: servers,
    namespace: namespace === '-' ? '' : namespace,
    requestTimeout: 6000,
  });
  client.on('error', err => process.stderr.write(`client error: ${err && err.message}\n`));
  await client.ready();
  if (mode === 'crud') {
    const published = await client.publishSingle(dataId, group, content);
    const got = await client.getConfig(dataId, group);
    const removed = await client.remove(dataId, group);
    const after = await client.getConfig(dataId, group);
    process.stdout.write(JSON.stringify({ published, got, removed, after }) + '\n');
    client.close();
    return;
  }
  if (mode === 'subscribe') {
    client.subscribe({ dataId, group }, value => {
      process.stdout.write(JSON.stringify({ content: value }) + '\n');
    });
    process.stdout.write(JSON.stringify({ subscribed: true }) + '\n');
    process.stdin.resume();
    process.stdin.on('end', () => {
      client.close();
      process.exit(0);
    });
    return;
  }
  throw new Error(`unknown mode ${mode}`);
}

main().catch(err => {
  process.stderr.write(`${err && err.stack}\n`);
  process.exit(1);
});
