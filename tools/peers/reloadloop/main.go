// reload-loop: the benchmark baseline for Kustos reloads, written for this project because
// the Go module proxy refuses github.com/stakater/Reloader (see bench/README.md).
//
// It does what Reloader does with its default settings and the annotations strategy:
// client-go shared informers on Secrets and Deployments of one namespace; on a Secret
// update whose SHA-1 over sorted "key=value" pairs changed, every Deployment annotated
// secret.reloader.stakater.com/reload with that Secret's name gets a strategic-merge patch
// of a pod-template annotation. No debounce, as in Reloader.
package main

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

const reloadAnnotation = "secret.reloader.stakater.com/reload"
const lastReloaded = "reloader.stakater.com/last-reloaded-from"

func hashOf(s *corev1.Secret) string {
	keys := make([]string, 0, len(s.Data))
	for k := range s.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+string(s.Data[k]))
	}
	sum := sha1.Sum([]byte(strings.Join(parts, ";")))
	return hex.EncodeToString(sum[:])
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file")
	namespace := flag.String("namespace", "default", "namespace to watch")
	flag.Parse()
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reload-loop:", err)
		os.Exit(2)
	}
	config.QPS, config.Burst = 50, 100
	client := kubernetes.NewForConfigOrDie(config)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(*namespace))
	deployments := factory.Apps().V1().Deployments().Lister()
	factory.Core().V1().Secrets().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, newObj interface{}) {
			before, after := oldObj.(*corev1.Secret), newObj.(*corev1.Secret)
			hash := hashOf(after)
			if hashOf(before) == hash {
				return
			}
			all, err := deployments.List(labelsEverything())
			if err != nil {
				return
			}
			for _, d := range all {
				if !names(d).has(after.Name) {
					continue
				}
				value, _ := json.Marshal(map[string]string{"type": "SECRET", "name": after.Name, "hash": hash, "observedAt": time.Now().UTC().Format(time.RFC3339Nano)})
				patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{"annotations": map[string]string{lastReloaded: string(value)}}}}})
				_, err := client.AppsV1().Deployments(d.Namespace).Patch(ctx, d.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
				if err != nil {
					fmt.Fprintln(os.Stderr, "reload-loop: patch:", err)
				}
			}
		},
	})
	factory.Apps().V1().Deployments().Informer()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	fmt.Println("ready")
	<-ctx.Done()
}

type set map[string]bool

func (s set) has(name string) bool { return s[name] }

func names(d *appsv1.Deployment) set {
	out := set{}
	for _, n := range strings.Split(d.Annotations[reloadAnnotation], ",") {
		if n = strings.TrimSpace(n); n != "" {
			out[n] = true
		}
	}
	return out
}

func labelsEverything() labels.Selector { return labels.Everything() }
