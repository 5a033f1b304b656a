import { createApp } from 'vue';
import { createRouter, createWebHashHistory } from 'vue-router';
import { ElAlert, ElButton, ElInput, ElTag, ElTimeline, ElTimelineItem } from 'element-plus';
import 'element-plus/dist/index.css';
import App from './App.vue';
import Progress from './views/Progress.vue';
import Chat from './views/Chat.vue';

// Hash routes (/#/ and /#/chat): the broker serves dist/ as static files.
const router = createRouter({
  history: createWebHashHistory(),
  routes: [
    { path: '/', name: 'progress', component: Progress },
    { path: '/chat', name: 'chat', component: Chat },
  ],
});

const app = createApp(App).use(router);
for (const c of [ElAlert, ElButton, ElInput, ElTag, ElTimeline, ElTimelineItem]) app.use(c);
app.mount('#app');
