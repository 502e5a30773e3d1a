// The official Node SDK receiving the same events as the ingress: EventDispatcher with the same
// keys behind its express adapter, doing no broker work at all.
const express = require('express');
const lark = require('@larksuiteoapi/node-sdk');

const port = Number(process.env.PORT || 3000);
const dispatcher = new lark.EventDispatcher({
  encryptKey: process.env.ENCRYPT_KEY,
  verificationToken: process.env.VERIFICATION_TOKEN,
  loggerLevel: lark.LoggerLevel.error,
}).register({
  'contact.user.updated_v3': async () => {},
});

const app = express();
app.use(express.json({ limit: '1mb' }));
app.post('/webhook/event', lark.adaptExpress(dispatcher, { autoChallenge: true }));
app.listen(port, '127.0.0.1', () => console.log(`node-sdk listening on ${port}`));
