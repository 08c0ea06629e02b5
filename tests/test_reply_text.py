"""A multilingual table for inboxd.mail.quotes.reply_text: one small mail per client
and language, written to look like what that client sends, with the exact
reply text expected.

The ids name the client and language ("outlook-de", "gmail-fr-wrapped",
"foxmail-zh"); the families are the embedded header blocks, attribution
lines, separator lines, forwards, interleaved quotes, signatures, mails
with nothing new, and prose that must be left alone.  bench/quotes.py
prints the share that matches exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from inboxd.mail.message import html_to_text
from inboxd.mail.quotes import reply_text

# (id, body, expected reply text)
Case = tuple[str, str, str]

# A quoted message body reused below the headers and attributions.
OLD = "Hello,\n\nyour order has shipped.\n\nKind regards\nSupport\n"


# --- Embedded header blocks (Outlook and others, localised) -----------------

HEADER_BLOCKS: list[Case] = [
    ("outlook-en",
     "Hi,\n\nPlease cancel order 1234.\n\nThanks,\nJane\n\n"
     "________________________________\n"
     "From: Shop Support <support@shop.example>\n"
     "Sent: Tuesday, January 2, 2024 10:00 AM\n"
     "To: Jane Doe <jane@example.org>\n"
     "Subject: RE: Order 1234\n\n" + OLD,
     "Hi,\n\nPlease cancel order 1234.\n\nThanks,\nJane"),
    ("outlook-de",
     "Hallo,\n\ndie Rechnung fehlt noch.\n\nViele Grüße\nJan Müller\n\n"
     "Von: Kundenservice <service@beispiel.de>\n"
     "Gesendet: Dienstag, 2. Januar 2024 10:00\n"
     "An: Jan Müller <jan@example.de>\n"
     "Cc: Buchhaltung <buchhaltung@example.de>\n"
     "Betreff: AW: Rechnung 88\n\n"
     "Sehr geehrter Herr Müller,\n\nanbei die Rechnung.\n",
     "Hallo,\n\ndie Rechnung fehlt noch.\n\nViele Grüße\nJan Müller"),
    ("outlook-de-original-message",
     "Bitte stornieren.\n\n"
     "-----Ursprüngliche Nachricht-----\n"
     "Von: Shop <shop@beispiel.de>\n"
     "Gesendet: Dienstag, 2. Januar 2024 10:00\n"
     "An: kunde@example.de\n"
     "Betreff: Ihre Bestellung\n\n"
     "Vielen Dank für Ihre Bestellung.\n",
     "Bitte stornieren."),
    ("outlook-fr",
     "Bonjour,\n\nJe n'ai toujours pas reçu le colis.\n\nCordialement,\nMarie\n\n"
     "De : Service Client <service@exemple.fr>\n"
     "Envoyé : mardi 2 janvier 2024 10:00\n"
     "À : Marie Dupont <marie@example.fr>\n"
     "Objet : RE: Commande 5521\n\n"
     "Bonjour Madame,\n\nVotre colis est parti.\n",
     "Bonjour,\n\nJe n'ai toujours pas reçu le colis.\n\nCordialement,\nMarie"),
    ("outlook-es",
     "Hola,\n\nel pedido llegó dañado.\n\nSaludos,\nLucía\n\n"
     "De: Atención al cliente <soporte@ejemplo.es>\n"
     "Enviado el: martes, 2 de enero de 2024 10:00\n"
     "Para: Lucía García <lucia@example.es>\n"
     "Asunto: RE: Pedido 7781\n\n"
     "Estimada Lucía:\n\nSu pedido ha sido enviado.\n",
     "Hola,\n\nel pedido llegó dañado.\n\nSaludos,\nLucía"),
    ("outlook-nl",
     "Goedemiddag,\n\nIk wil graag mijn abonnement opzeggen.\n\nMet vriendelijke groet,\nPieter\n\n"
     "Van: Klantenservice <service@voorbeeld.nl>\n"
     "Verzonden: dinsdag 2 januari 2024 10:00\n"
     "Aan: Pieter de Vries <pieter@example.nl>\n"
     "Onderwerp: RE: Abonnement\n\n"
     "Beste Pieter,\n\nBedankt voor uw bericht.\n",
     "Goedemiddag,\n\nIk wil graag mijn abonnement opzeggen.\n\nMet vriendelijke groet,\nPieter"),
    ("outlook-da",
     "Hej,\n\nVarerne er ikke kommet endnu.\n\nMed venlig hilsen\nMette\n\n"
     "Fra: Kundeservice <service@eksempel.dk>\n"
     "Sendt: 2. januar 2024 10:00\n"
     "Til: Mette Hansen <mette@example.dk>\n"
     "Emne: SV: Ordre 3321\n\n"
     "Kære Mette\n\nDin ordre er afsendt.\n",
     "Hej,\n\nVarerne er ikke kommet endnu.\n\nMed venlig hilsen\nMette"),
    ("outlook-no",
     "Hei,\n\nJeg har fortsatt ikke fått refusjon.\n\nHilsen Ola\n\n"
     "Fra: Kundeservice <kundeservice@eksempel.no>\n"
     "Sendt: tirsdag 2. januar 2024 10:00\n"
     "Til: Ola Nordmann <ola@example.no>\n"
     "Kopi: Regnskap <regnskap@eksempel.no>\n"
     "Emne: SV: Refusjon\n\n"
     "Hei Ola,\n\nRefusjonen er behandlet.\n",
     "Hei,\n\nJeg har fortsatt ikke fått refusjon.\n\nHilsen Ola"),
    ("outlook-sv",
     "Hej!\n\nTack, det fungerar nu.\n\nVänliga hälsningar\nAnna\n\n"
     "Från: Support <support@exempel.se>\n"
     "Skickat: den 2 januari 2024 10:00\n"
     "Till: Anna Svensson <anna@example.se>\n"
     "Ämne: SV: Inloggning\n\n"
     "Hej Anna,\n\nProva att starta om appen.\n",
     "Hej!\n\nTack, det fungerar nu.\n\nVänliga hälsningar\nAnna"),
    ("outlook-fi",
     "Hei,\n\nLasku on maksettu eilen.\n\nTerveisin\nMatti\n\n"
     "Lähettäjä: Asiakaspalvelu <asiakaspalvelu@esimerkki.fi>\n"
     "Lähetetty: tiistai 2. tammikuuta 2024 10.00\n"
     "Vastaanottaja: Matti Virtanen <matti@example.fi>\n"
     "Aihe: VS: Lasku 4410\n\n"
     "Hei Matti,\n\nmuistutamme erääntyneestä laskusta.\n",
     "Hei,\n\nLasku on maksettu eilen.\n\nTerveisin\nMatti"),
    ("outlook-ru",
     "Здравствуйте!\n\nЗаказ так и не пришёл.\n\nС уважением,\nИван\n\n"
     "От: Служба поддержки <support@primer.ru>\n"
     "Отправлено: 2 января 2024 г. 10:00\n"
     "Кому: Иван Петров <ivan@example.ru>\n"
     "Тема: RE: Заказ 9912\n\n"
     "Добрый день, Иван!\n\nВаш заказ отправлен.\n",
     "Здравствуйте!\n\nЗаказ так и не пришёл.\n\nС уважением,\nИван"),
    ("outlook-uk",
     "Доброго дня!\n\nПрошу повернути кошти.\n\nЗ повагою,\nОлена\n\n"
     "Від: Служба підтримки <support@pryklad.ua>\n"
     "Надіслано: 2 січня 2024 р. 10:00\n"
     "Кому: Олена Коваленко <olena@example.ua>\n"
     "Тема: RE: Повернення\n\n"
     "Шановна Олено!\n\nДякуємо за звернення.\n",
     "Доброго дня!\n\nПрошу повернути кошти.\n\nЗ повагою,\nОлена"),
    ("outlook-pl",
     "Dzień dobry,\n\nproszę o fakturę korygującą.\n\nPozdrawiam\nPiotr\n\n"
     "Od: Obsługa Klienta <bok@przyklad.pl>\n"
     "Wysłano: wtorek, 2 stycznia 2024 10:00\n"
     "Do: Piotr Nowak <piotr@example.pl>\n"
     "Temat: RE: Faktura 2024/01/15\n\n"
     "Szanowny Panie,\n\nw załączniku faktura.\n",
     "Dzień dobry,\n\nproszę o fakturę korygującą.\n\nPozdrawiam\nPiotr"),
    ("outlook-cs",
     "Dobrý den,\n\nzásilka stále nedorazila.\n\nS pozdravem\nJana\n\n"
     "Od: Zákaznická podpora <podpora@priklad.cz>\n"
     "Odesláno: úterý 2. ledna 2024 10:00\n"
     "Komu: Jana Nováková <jana@example.cz>\n"
     "Předmět: RE: Objednávka 3310\n\n"
     "Dobrý den,\n\nvaše objednávka byla odeslána.\n",
     "Dobrý den,\n\nzásilka stále nedorazila.\n\nS pozdravem\nJana"),
    ("outlook-zh",
     "您好，\n\n发票抬头写错了，请重开。\n\n谢谢\n王芳\n\n"
     "发件人: 客服中心 <service@example.cn>\n"
     "发送时间: 2024年1月2日 10:00\n"
     "收件人: 王芳 <wangfang@example.cn>\n"
     "主题: 回复: 发票\n\n"
     "王女士您好，发票已开具。\n",
     "您好，\n\n发票抬头写错了，请重开。\n\n谢谢\n王芳"),
    ("outlook-zh-tw",
     "您好，\n\n請問何時可以退款？\n\n陳先生\n\n"
     "寄件者: 客服中心 <service@example.tw>\n"
     "寄件日期: 2024年1月2日 上午 10:00\n"
     "收件者: 陳大文 <chen@example.tw>\n"
     "主旨: 回覆: 退款申請\n\n"
     "陳先生您好，我們已收到您的申請。\n",
     "您好，\n\n請問何時可以退款？\n\n陳先生"),
    ("outlook-ja",
     "お世話になっております。\n\n請求書の再発行をお願いします。\n\n山田\n\n"
     "差出人: サポート窓口 <support@example.jp>\n"
     "送信日時: 2024年1月2日 10:00\n"
     "宛先: 山田 太郎 <yamada@example.jp>\n"
     "件名: RE: 請求書について\n\n"
     "山田様\n\nいつもお世話になっております。\n",
     "お世話になっております。\n\n請求書の再発行をお願いします。\n\n山田"),
    ("outlook-ja-fullwidth-colon",
     "了解しました。\n\n"
     "差出人：サポート窓口 <support@example.jp>\n"
     "送信日時：2024年1月2日 10:00\n"
     "宛先：山田 太郎 <yamada@example.jp>\n"
     "件名：RE: 配送について\n\n"
     "山田様\n",
     "了解しました。"),
    ("outlook-ko",
     "안녕하세요.\n\n환불 진행 상황이 궁금합니다.\n\n감사합니다.\n김민수 드림\n\n"
     "보낸 사람: 고객센터 <support@example.kr>\n"
     "보낸 날짜: 2024년 1월 2일 화요일 오전 10:00\n"
     "받는 사람: 김민수 <minsu@example.kr>\n"
     "제목: RE: 환불 요청\n\n"
     "김민수 고객님, 안녕하세요.\n",
     "안녕하세요.\n\n환불 진행 상황이 궁금합니다.\n\n감사합니다.\n김민수 드림"),
    ("outlook-it",
     "Buongiorno,\n\nil prodotto è arrivato rotto.\n\nCordiali saluti\nGiulia\n\n"
     "Da: Assistenza Clienti <assistenza@esempio.it>\n"
     "Inviato: martedì 2 gennaio 2024 10:00\n"
     "A: Giulia Rossi <giulia@example.it>\n"
     "Oggetto: R: Ordine 6610\n\n"
     "Gentile cliente,\n\nil suo ordine è stato spedito.\n",
     "Buongiorno,\n\nil prodotto è arrivato rotto.\n\nCordiali saluti\nGiulia"),
    ("outlook-pt",
     "Bom dia,\n\nainda não recebi a encomenda.\n\nCumprimentos,\nJoão\n\n"
     "De: Apoio ao Cliente <apoio@exemplo.pt>\n"
     "Enviada: terça-feira, 2 de janeiro de 2024 10:00\n"
     "Para: João Silva <joao@example.pt>\n"
     "Assunto: RE: Encomenda 1209\n\n"
     "Caro João,\n\na sua encomenda foi expedida.\n",
     "Bom dia,\n\nainda não recebi a encomenda.\n\nCumprimentos,\nJoão"),
    ("outlook-pt-br",
     "Olá,\n\no boleto venceu ontem, podem enviar outro?\n\nAbraços,\nCarla\n\n"
     "De: Atendimento <atendimento@exemplo.com.br>\n"
     "Enviado: terça-feira, 2 de janeiro de 2024 10:00\n"
     "Para: Carla Souza <carla@example.com.br>\n"
     "Assunto: RES: Boleto\n\n"
     "Olá Carla,\n\nsegue o boleto.\n",
     "Olá,\n\no boleto venceu ontem, podem enviar outro?\n\nAbraços,\nCarla"),
    ("outlook-tr",
     "Merhaba,\n\nSiparişim hâlâ gelmedi.\n\nSaygılarımla,\nAyşe\n\n"
     "Kimden: Müşteri Hizmetleri <destek@ornek.com.tr>\n"
     "Gönderildi: 2 Ocak 2024 Salı 10:00\n"
     "Kime: Ayşe Yılmaz <ayse@example.com.tr>\n"
     "Konu: YNT: Sipariş 5120\n\n"
     "Sayın Ayşe Hanım,\n\nsiparişiniz kargoya verildi.\n",
     "Merhaba,\n\nSiparişim hâlâ gelmedi.\n\nSaygılarımla,\nAyşe"),
    ("outlook-mac-en",
     "Thanks, received.\n\n"
     "From: Billing <billing@example.com>\n"
     "Date: Tuesday, 2 January 2024 at 10:00\n"
     "To: Tom Baker <tom@example.org>\n"
     "Subject: Invoice 77\n\n" + OLD,
     "Thanks, received."),
    ("outlook-mac-de",
     "Passt, danke!\n\n"
     "Von: Buchhaltung <buchhaltung@beispiel.de>\n"
     "Datum: Dienstag, 2. Januar 2024 um 10:00\n"
     "An: Tom Becker <tom@example.de>\n"
     "Betreff: Rechnung 77\n\n"
     "Hallo Tom,\n",
     "Passt, danke!"),
    ("gmail-plain-outlook-bold-de",
     "Ja, bitte so machen.\n\n"
     "*Von:* Kundenservice <service@beispiel.de>\n"
     "*Gesendet:* Dienstag, 2. Januar 2024 10:00\n"
     "*An:* Jan Müller <jan@example.de>\n"
     "*Betreff:* Ihre Anfrage\n\n"
     "Sehr geehrter Herr Müller,\n",
     "Ja, bitte so machen."),
    ("html2text-outlook-fr",
     "Merci pour votre retour.\n\n"
     "* * *\n\n"
     "**De :** Service Client <service@exemple.fr>  \n"
     "**Envoyé :** mardi 2 janvier 2024 10:00  \n"
     "**À :** Marie Dupont <marie@example.fr>  \n"
     "**Objet :** Votre demande\n\n"
     "Bonjour Madame,\n",
     "Merci pour votre retour."),
    ("html2text-outlook-zh-fullwidth",
     "好的，收到。\n\n"
     "* * *\n\n"
     "**发件人：** 客服中心 <service@example.cn>  \n"
     "**发送时间：** 2024年1月2日 10:00  \n"
     "**收件人：** 李雷 <lilei@example.cn>  \n"
     "**主题：** 订单发货\n\n"
     "李先生您好，\n",
     "好的，收到。"),
    ("html2text-outlook-es-blank-lines",
     "Perfecto, gracias.\n\n"
     "**De:** Soporte <soporte@ejemplo.es>\n\n"
     "**Enviado el:** martes, 2 de enero de 2024 10:00\n\n"
     "**Para:** Lucía <lucia@example.es>\n\n"
     "**Asunto:** Incidencia 552\n\n"
     "Hola Lucía,\n",
     "Perfecto, gracias."),
    ("html2text-quoted-outlook-it",
     "Va bene così.\n\n"
     "> **Da:** Assistenza <assistenza@esempio.it>\n"
     "> **Inviato:** martedì 2 gennaio 2024 10:00\n"
     "> **A:** Giulia <giulia@example.it>\n"
     "> **Oggetto:** Reso\n"
     ">\n"
     "> Gentile Giulia,\n",
     "Va bene così."),
    ("outlook-inline-headers-en",
     "See my answer below.\n\n"
     "From: Support <support@example.com> Sent: Tuesday, January 2, 2024 10:00 AM "
     "To: Jane <jane@example.org> Subject: Ticket 42\n\n"
     "Is the printer on?\n",
     "See my answer below."),
    ("windows-mail-en",
     "I will be there at 3.\n\n"
     "Sent from Mail for Windows 10\n\n"
     "From: Support\n"
     "Sent: Tuesday, January 2, 2024 10:00\n"
     "To: Jane Doe\n\n"
     "Can you come by the office?\n",
     "I will be there at 3."),
]


# --- Attribution lines ("On <date>, <name> wrote:") ---------------------------

ATTRIBUTIONS: list[Case] = [
    ("gmail-en",
     "That worked, thanks!\n\n"
     "On Tue, Jan 2, 2024 at 10:00 AM Support <support@example.com> wrote:\n\n"
     "> Please restart the router.\n",
     "That worked, thanks!"),
    ("gmail-en-wrapped",
     "That worked, thanks!\n\n"
     "On Tue, Jan 2, 2024 at 10:00 AM Example Corporation Customer Support <\n"
     "support@example.com> wrote:\n\n"
     "> Please restart the router.\n",
     "That worked, thanks!"),
    ("gmail-de",
     "Danke, jetzt geht es.\n\n"
     "Am Di., 2. Jan. 2024 um 10:00 Uhr schrieb Support <support@beispiel.de>:\n\n"
     "> Bitte starten Sie den Router neu.\n",
     "Danke, jetzt geht es."),
    ("gmail-de-wrapped",
     "Danke, jetzt geht es.\n\n"
     "Am Di., 2. Jan. 2024 um 10:00 Uhr schrieb Kundenservice Beispiel GmbH <\n"
     "service@beispiel.de>:\n\n"
     "> Bitte starten Sie den Router neu.\n",
     "Danke, jetzt geht es."),
    ("thunderbird-de",
     "Erledigt.\n\n"
     "Am 02.01.24 um 10:00 schrieb Support:\n"
     "> Bitte bestätigen Sie den Termin.\n",
     "Erledigt."),
    ("yahoo-de",
     "Alles klar.\n\n\n"
     "Am Dienstag, 2. Januar 2024, 10:00:00 MEZ hat Support <support@beispiel.de> Folgendes geschrieben:\n\n"
     "Bitte bestätigen Sie den Termin.\n",
     "Alles klar."),
    ("gmail-fr",
     "Merci beaucoup !\n\n"
     "Le mar. 2 janv. 2024 à 10:00, Support <support@exemple.fr> a écrit :\n\n"
     "> Pouvez-vous redémarrer l'appareil ?\n",
     "Merci beaucoup !"),
    ("gmail-fr-wrapped",
     "Merci beaucoup !\n\n"
     "Le mar. 2 janv. 2024 à 10:00, Service Client de la Société Exemple <\n"
     "service-client@exemple.fr> a écrit :\n\n"
     "> Pouvez-vous redémarrer l'appareil ?\n",
     "Merci beaucoup !"),
    ("apple-mail-fr",
     "C'est noté.\n\n"
     "> Le 2 janv. 2024 à 10:00, Support <support@exemple.fr> a écrit :\n"
     "> \n"
     "> Bonjour,\n",
     "C'est noté."),
    ("thunderbird-fr-unquoted",
     "D'accord.\n\n"
     "Le 02/01/2024 à 10:00, Support a écrit :\n"
     "Bonjour, votre rendez-vous est confirmé.\n",
     "D'accord."),
    ("gmail-es",
     "Muchas gracias.\n\n"
     "El mar, 2 ene 2024 a las 10:00, Soporte (<soporte@ejemplo.es>) escribió:\n\n"
     "> ¿Puede reiniciar el equipo?\n",
     "Muchas gracias."),
    ("gmail-es-wrapped",
     "Muchas gracias.\n\n"
     "El mar, 2 ene 2024 a las 10:00, Atención al Cliente Ejemplo (<\n"
     "soporte@ejemplo.es>) escribió:\n\n"
     "> ¿Puede reiniciar el equipo?\n",
     "Muchas gracias."),
    ("gmail-nl",
     "Bedankt, het werkt.\n\n"
     "Op di 2 jan 2024 om 10:00 schreef Klantenservice <service@voorbeeld.nl>:\n\n"
     "> Kunt u de app opnieuw installeren?\n",
     "Bedankt, het werkt."),
    ("apple-mail-nl",
     "Prima.\n\n"
     "> Op 2 jan. 2024 om 10:00 heeft Klantenservice <service@voorbeeld.nl> het volgende geschreven:\n"
     ">\n"
     "> Kunt u de app opnieuw installeren?\n",
     "Prima."),
    ("apple-mail-nl-unquoted",
     "Prima.\n\n"
     "Op 2 jan. 2024 om 10:00 heeft Klantenservice <service@voorbeeld.nl> het volgende geschreven:\n\n"
     "Kunt u de app opnieuw installeren?\n",
     "Prima."),
    ("gmail-it",
     "Grazie mille.\n\n"
     "Il giorno mar 2 gen 2024 alle ore 10:00 Assistenza <assistenza@esempio.it> ha scritto:\n\n"
     "> Può riavviare il dispositivo?\n",
     "Grazie mille."),
    ("gmail-pt-br",
     "Obrigada, deu certo.\n\n"
     "Em ter., 2 de jan. de 2024 às 10:00, Suporte <suporte@exemplo.com.br> escreveu:\n\n"
     "> Pode reiniciar o aparelho?\n",
     "Obrigada, deu certo."),
    ("apple-mail-pt",
     "Obrigado.\n\n"
     "No dia 2/01/2024, às 10:00, Apoio <apoio@exemplo.pt> escreveu:\n\n"
     "Pode confirmar a morada?\n",
     "Obrigado."),
    ("gmail-sv",
     "Tack, nu fungerar det.\n\n"
     "Den tis 2 jan. 2024 kl 10:00 skrev Support <support@exempel.se>:\n\n"
     "> Kan du starta om routern?\n",
     "Tack, nu fungerar det."),
    ("apple-mail-sv",
     "Tack!\n\n"
     "2 jan. 2024 kl. 10:00 skrev Support <support@exempel.se>:\n\n"
     "Kan du starta om routern?\n",
     "Tack!"),
    ("gmail-da",
     "Tak, det virker.\n\n"
     "Den tir. 2. jan. 2024 kl. 10.00 skrev Kundeservice <service@eksempel.dk>:\n\n"
     "> Kan du genstarte routeren?\n",
     "Tak, det virker."),
    ("gmail-no",
     "Takk, nå virker det.\n\n"
     "tir. 2. jan. 2024 kl. 10:00 skrev Kundeservice <kundeservice@eksempel.no>:\n\n"
     "> Kan du starte ruteren på nytt?\n",
     "Takk, nå virker det."),
    ("gmail-fi",
     "Kiitos, nyt toimii.\n\n"
     "ti 2. tammik. 2024 klo 10.00 Asiakaspalvelu (asiakaspalvelu@esimerkki.fi) kirjoitti:\n\n"
     "> Voitteko käynnistää laitteen uudelleen?\n",
     "Kiitos, nyt toimii."),
    ("thunderbird-fi",
     "Kiitos.\n\n"
     "Asiakaspalvelu kirjoitti 2.1.2024 klo 10.00:\n"
     "> Voitteko käynnistää laitteen uudelleen?\n",
     "Kiitos."),
    ("thunderbird-pl",
     "Dziękuję, działa.\n\n"
     "W dniu 2.01.2024 o 10:00, Obsługa Klienta pisze:\n"
     "> Proszę zrestartować urządzenie.\n",
     "Dziękuję, działa."),
    ("gmail-pl",
     "Dziękuję, działa.\n\n"
     "wt., 2 sty 2024 o 10:00 Obsługa <obsluga@przyklad.pl> napisał(a):\n\n"
     "> Proszę zrestartować urządzenie.\n",
     "Dziękuję, działa."),
    ("gmail-cs",
     "Děkuji, funguje to.\n\n"
     "út 2. 1. 2024 v 10:00 odesílatel Podpora <podpora@priklad.cz> napsal:\n\n"
     "> Můžete zařízení restartovat?\n",
     "Děkuji, funguje to."),
    ("thunderbird-cs",
     "Děkuji.\n\n"
     "Dne 02. 01. 24 v 10:00 Podpora napsal(a):\n"
     "> Můžete zařízení restartovat?\n",
     "Děkuji."),
    ("thunderbird-ru",
     "Спасибо, всё работает.\n\n"
     "02.01.2024 10:00, Служба поддержки пишет:\n"
     "> Перезагрузите, пожалуйста, роутер.\n",
     "Спасибо, всё работает."),
    ("gmail-ru",
     "Спасибо, всё работает.\n\n"
     "вт, 2 янв. 2024 г. в 10:00, Поддержка <support@primer.ru>:\n\n"
     "> Перезагрузите, пожалуйста, роутер.\n",
     "Спасибо, всё работает."),
    ("yandex-ru",
     "Спасибо!\n\n"
     "02.01.2024, 10:00, \"Поддержка\" <support@primer.ru>:\n"
     "> Перезагрузите, пожалуйста, роутер.\n",
     "Спасибо!"),
    ("mailru-ru",
     "Спасибо!\n\n\n"
     "Вторник, 2 января 2024, 10:00 +03:00 от Поддержка <support@primer.ru>:\n"
     "> Перезагрузите, пожалуйста, роутер.\n",
     "Спасибо!"),
    ("gmail-uk",
     "Дякую, працює.\n\n"
     "вт, 2 січ. 2024 р. о 10:00 Підтримка <support@pryklad.ua> пише:\n\n"
     "> Перезавантажте, будь ласка, роутер.\n",
     "Дякую, працює."),
    ("gmail-tr",
     "Teşekkürler, çalışıyor.\n\n"
     "Destek <destek@ornek.com.tr>, 2 Oca 2024 Sal, 10:00 tarihinde şunu yazdı:\n\n"
     "> Modemi yeniden başlatır mısınız?\n",
     "Teşekkürler, çalışıyor."),
    ("gmail-zh",
     "谢谢，已经好了。\n\n"
     "客服中心 <service@example.cn> 于2024年1月2日周二 10:00写道：\n\n"
     "> 请重启路由器。\n",
     "谢谢，已经好了。"),
    ("gmail-zh-wrapped",
     "谢谢，已经好了。\n\n"
     "Example Technology Customer Service Center <service@example.cn>\n"
     "于2024年1月2日周二 10:00写道：\n\n"
     "> 请重启路由器。\n",
     "谢谢，已经好了。"),
    ("apple-mail-zh",
     "收到。\n\n"
     "> 2024年1月2日 10:00，客服中心 <service@example.cn> 写道：\n"
     "> \n"
     "> 请重启路由器。\n",
     "收到。"),
    ("gmail-zh-tw",
     "謝謝，已經好了。\n\n"
     "客服中心 <service@example.tw> 於 2024年1月2日 週二 上午10:00寫道：\n\n"
     "> 請重新啟動路由器。\n",
     "謝謝，已經好了。"),
    ("gmail-ja",
     "ありがとうございます。解決しました。\n\n"
     "2024年1月2日(火) 10:00 サポート窓口 <support@example.jp>:\n\n"
     "> ルーターを再起動してください。\n",
     "ありがとうございます。解決しました。"),
    ("apple-mail-ja",
     "承知しました。\n\n"
     "> 2024/01/02 10:00、サポート窓口 <support@example.jp>のメール:\n"
     "> \n"
     "> ルーターを再起動してください。\n",
     "承知しました。"),
    ("thunderbird-ja",
     "承知しました。\n\n"
     "2024/01/02 10:00 サポート窓口 さんは書きました:\n"
     "> ルーターを再起動してください。\n",
     "承知しました。"),
    ("outlook-ja-message-of",
     "承知しました。\n\n"
     "2024/01/02 10:00、サポート窓口 <support@example.jp> のメッセージ:\n\n"
     "ルーターを再起動してください。\n",
     "承知しました。"),
    ("gmail-ko",
     "감사합니다. 해결되었습니다.\n\n"
     "2024년 1월 2일 (화) 오전 10:00, 고객센터 <support@example.kr>님이 작성:\n\n"
     "> 공유기를 재부팅해 주세요.\n",
     "감사합니다. 해결되었습니다."),
    ("apple-mail-ko",
     "확인했습니다.\n\n"
     "> 2024. 1. 2. 오전 10:00, 고객센터 <support@example.kr> 작성:\n"
     "> \n"
     "> 공유기를 재부팅해 주세요.\n",
     "확인했습니다."),
    ("html2text-gmail-en",
     "Works now.\n\n"
     "On Tue, Jan 2, 2024 at 10:00 AM Support <[support@example.com](mailto:support@example.com)>\n"
     "wrote:\n\n"
     "> Please restart the router.  \n"
     "> Best, Support\n",
     "Works now."),
]


# --- Separator lines -----------------------------------------------------------

SEPARATORS: list[Case] = [
    ("outlook-original-message-en",
     "Please cancel.\n\n-----Original Message-----\nFrom: Shop <shop@example.com>\n"
     "Sent: Tuesday, January 2, 2024 10:00 AM\nTo: me@example.org\nSubject: Order\n\n" + OLD,
     "Please cancel."),
    ("yahoo-original-message-en",
     "OK for me.\n\n----- Original Message -----\nFrom: Support <support@example.com>\n"
     "To: me@example.org\nSent: Tuesday, January 2, 2024 10:00 AM\nSubject: Visit\n\n" + OLD,
     "OK for me."),
    ("samsung-de",
     "Passt.\n\n\n-------- Ursprüngliche Nachricht --------\nVon: Support <support@beispiel.de>\n"
     "Datum: 02.01.24 10:00 (GMT+01:00)\nAn: kunde@example.de\nBetreff: Termin\n\nHallo,\n",
     "Passt."),
    ("samsung-fr",
     "Ça marche.\n\n\n-------- Message d'origine --------\nDe : Support <support@exemple.fr>\n"
     "Date : 02/01/2024 10:00 (GMT+01:00)\nÀ : client@example.fr\nObjet : Rendez-vous\n\nBonjour,\n",
     "Ça marche."),
    ("samsung-es",
     "Vale.\n\n\n-------- Mensaje original --------\nDe: Soporte <soporte@ejemplo.es>\n"
     "Fecha: 2/1/24 10:00 (GMT+01:00)\nPara: cliente@example.es\nAsunto: Cita\n\nHola,\n",
     "Vale."),
    ("samsung-nl",
     "Goed.\n\n\n-------- Oorspronkelijk bericht --------\nVan: Service <service@voorbeeld.nl>\n"
     "Datum: 02-01-2024 10:00 (GMT+01:00)\nAan: klant@example.nl\nOnderwerp: Afspraak\n\nBeste,\n",
     "Goed."),
    ("outlook-it-original",
     "Va bene.\n\n-----Messaggio originale-----\nDa: Assistenza <assistenza@esempio.it>\n"
     "Inviato: martedì 2 gennaio 2024 10:00\nA: cliente@example.it\nOggetto: Appuntamento\n\nBuongiorno,\n",
     "Va bene."),
    ("outlook-pt-original",
     "Está bem.\n\n-----Mensagem original-----\nDe: Apoio <apoio@exemplo.pt>\n"
     "Enviada: terça-feira, 2 de janeiro de 2024 10:00\nPara: cliente@example.pt\nAssunto: Marcação\n\nOlá,\n",
     "Está bem."),
    ("outlook-ru-original",
     "Хорошо.\n\n-----Исходное сообщение-----\nОт: Поддержка <support@primer.ru>\n"
     "Отправлено: 2 января 2024 г. 10:00\nКому: client@example.ru\nТема: Встреча\n\nДобрый день,\n",
     "Хорошо."),
    ("outlook-cs-original",
     "Dobře.\n\n-----Původní zpráva-----\nOd: Podpora <podpora@priklad.cz>\n"
     "Odesláno: úterý 2. ledna 2024 10:00\nKomu: klient@example.cz\nPředmět: Schůzka\n\nDobrý den,\n",
     "Dobře."),
    ("outlook-pl-original",
     "Dobrze.\n\n-----Oryginalna wiadomość-----\nOd: Obsługa <bok@przyklad.pl>\n"
     "Wysłano: wtorek, 2 stycznia 2024 10:00\nDo: klient@example.pl\nTemat: Spotkanie\n\nDzień dobry,\n",
     "Dobrze."),
    ("outlook-fi-original",
     "Selvä.\n\n-----Alkuperäinen viesti-----\nLähettäjä: Tuki <tuki@esimerkki.fi>\n"
     "Lähetetty: tiistai 2. tammikuuta 2024 10.00\nVastaanottaja: asiakas@example.fi\nAihe: Tapaaminen\n\nHei,\n",
     "Selvä."),
    ("outlook-no-original",
     "Greit.\n\n-----Opprinnelig melding-----\nFra: Kundeservice <kundeservice@eksempel.no>\n"
     "Sendt: tirsdag 2. januar 2024 10:00\nTil: kunde@example.no\nEmne: Avtale\n\nHei,\n",
     "Greit."),
    ("outlook-sv-original",
     "Okej.\n\n-----Ursprungligt meddelande-----\nFrån: Support <support@exempel.se>\n"
     "Skickat: den 2 januari 2024 10:00\nTill: kund@example.se\nÄmne: Möte\n\nHej,\n",
     "Okej."),
    ("outlook-da-original",
     "Fint.\n\n-----Oprindelig meddelelse-----\nFra: Kundeservice <service@eksempel.dk>\n"
     "Sendt: 2. januar 2024 10:00\nTil: kunde@example.dk\nEmne: Møde\n\nHej,\n",
     "Fint."),
    ("outlook-ja-original",
     "了解です。\n\n-----元のメッセージ-----\n差出人: サポート <support@example.jp>\n"
     "送信日時: 2024年1月2日 10:00\n宛先: customer@example.jp\n件名: 打ち合わせ\n\nお世話になっております。\n",
     "了解です。"),
    ("outlook-ko-original",
     "알겠습니다.\n\n-----원본 메시지-----\n보낸 사람: 고객센터 <support@example.kr>\n"
     "보낸 날짜: 2024년 1월 2일 화요일 오전 10:00\n받는 사람: customer@example.kr\n제목: 미팅\n\n안녕하세요.\n",
     "알겠습니다."),
    ("foxmail-zh",
     "好的，明天上午来取。\n\n\n"
     "------------------ 原始邮件 ------------------\n"
     "发件人: \"客服中心\"<service@example.cn>;\n"
     "发送时间: 2024年1月2日(星期二) 上午10:00\n"
     "收件人: \"王芳\"<wangfang@example.cn>;\n"
     "主题: 维修完成\n\n"
     "您好，您的设备已修好。\n",
     "好的，明天上午来取。"),
    ("qq-mobile-zh",
     "可以\n\n"
     "发自我的iPhone\n\n\n"
     "------------------ Original ------------------\n"
     "From: 客服中心 <service@example.cn>\n"
     "Date: Tue,Jan 2,2024 10:00 AM\n"
     "To: 王芳 <wangfang@example.cn>\n"
     "Subject: Re: 维修完成\n\n"
     "您好，您的设备已修好。\n",
     "可以"),
    ("netease-zh-tw-original",
     "沒問題。\n\n-----原始郵件-----\n寄件者: 客服中心 <service@example.tw>\n"
     "日期: 2024年1月2日 10:00\n收件者: chen@example.tw\n主旨: 預約\n\n陳先生您好，\n",
     "沒問題。"),
    ("netease-master-zh",
     "已付款，请发货。\n\n"
     "---- 回复的原邮件 ----\n"
     "| 发件人 | 客服中心<service@example.cn> |\n"
     "| 日期 | 2024年01月02日 10:00 |\n"
     "| 收件人 | 王芳<wangfang@example.cn> |\n"
     "| 主题 | 订单待付款 |\n\n"
     "您好，请尽快付款。\n",
     "已付款，请发货。"),
    ("html2text-escaped-original-message",
     "Please cancel.\n\n\\-----Original Message-----  \n**From:** Shop <shop@example.com>  \n"
     "**Sent:** Tuesday, January 2, 2024 10:00 AM  \n**To:** me@example.org  \n**Subject:** Order\n\n"
     "Thank you for your order.\n",
     "Please cancel."),
]


# --- Forwarded mail ----------------------------------------------------------------

FORWARDS: list[Case] = [
    ("gmail-forward-en",
     "FYI, see below.\n\n---------- Forwarded message ---------\nFrom: Carrier <noreply@carrier.example>\n"
     "Date: Tue, Jan 2, 2024 at 10:00 AM\nSubject: Delivery failed\nTo: <jane@example.org>\n\n"
     "We could not deliver your parcel.\n",
     "FYI, see below."),
    ("gmail-forward-de",
     "Siehe unten.\n\n---------- Weitergeleitete Nachricht ---------\nVon: Spedition <noreply@spedition.de>\n"
     "Date: Di., 2. Jan. 2024 um 10:00 Uhr\nSubject: Zustellung\nTo: <jan@example.de>\n\n"
     "Ihr Paket konnte nicht zugestellt werden.\n",
     "Siehe unten."),
    ("gmail-forward-es",
     "Os reenvío esto.\n\n---------- Mensaje reenviado ---------\nDe: Transportes <noreply@transportes.es>\n"
     "Date: mar, 2 ene 2024 a las 10:00\nSubject: Entrega\nTo: <lucia@example.es>\n\n"
     "No pudimos entregar su paquete.\n",
     "Os reenvío esto."),
    ("apple-mail-forward-en",
     "Is this from you?\n\nBegin forwarded message:\n\nFrom: Billing <billing@example.com>\n"
     "Subject: Payment failed\nDate: 2 January 2024 at 10:00:00 CET\nTo: jane@example.org\n\n"
     "Your payment failed.\n",
     "Is this from you?"),
    ("apple-mail-forward-de",
     "Ist das von Ihnen?\n\nAnfang der weitergeleiteten Nachricht:\n\nVon: Abrechnung <abrechnung@beispiel.de>\n"
     "Betreff: Zahlung fehlgeschlagen\nDatum: 2. Januar 2024 um 10:00:00 MEZ\nAn: jan@example.de\n\n"
     "Ihre Zahlung ist fehlgeschlagen.\n",
     "Ist das von Ihnen?"),
    ("apple-mail-forward-fr",
     "C'est bien vous ?\n\nDébut du message réexpédié :\n\nDe: Facturation <facturation@exemple.fr>\n"
     "Objet: Paiement refusé\nDate: 2 janvier 2024 à 10:00:00 UTC+1\nÀ: marie@example.fr\n\n"
     "Votre paiement a été refusé.\n",
     "C'est bien vous ?"),
    ("apple-mail-forward-ja",
     "こちらをご確認ください。\n\n転送されたメッセージ:\n\n差出人: 請求担当 <billing@example.jp>\n"
     "件名: お支払いについて\n日付: 2024年1月2日 10:00:00 JST\n宛先: yamada@example.jp\n\n"
     "お支払いが確認できませんでした。\n",
     "こちらをご確認ください。"),
    ("thunderbird-forward-en",
     "Forwarding as asked.\n\n-------- Forwarded Message --------\nSubject: \tDelivery failed\n"
     "Date: \tTue, 2 Jan 2024 10:00:00 +0100\nFrom: \tCarrier <noreply@carrier.example>\n"
     "To: \tjane@example.org\n\nWe could not deliver your parcel.\n",
     "Forwarding as asked."),
    ("samsung-forward-fr",
     "Pour info.\n\n\n-------- Message transféré --------\nDe : Transporteur <noreply@transporteur.fr>\n"
     "Date : 02/01/2024 10:00 (GMT+01:00)\nÀ : marie@example.fr\nObjet : Livraison\n\nBonjour,\n",
     "Pour info."),
    ("outlook-forward-pl",
     "Przesyłam dalej.\n\n________________________________\nOd: Kurier <noreply@kurier.pl>\n"
     "Wysłane: wtorek, 2 stycznia 2024 10:00\nDo: piotr@example.pl\nTemat: Doręczenie\n\nDzień dobry,\n",
     "Przesyłam dalej."),
    ("forward-only-spam",
     "---------- Forwarded message ---------\nFrom: Prize Department <win@lottery.example>\n"
     "Date: Tue, Jan 2, 2024 at 10:00 AM\nSubject: You have won!\nTo: <jane@example.org>\n\n"
     "Congratulations! Send us your bank details to claim your prize.\n",
     ""),
    ("forward-only-outlook-de",
     "________________________________\nVon: Gewinnspiel <info@gewinn.example>\n"
     "Gesendet: Dienstag, 2. Januar 2024 10:00\nAn: jan@example.de\nBetreff: Sie haben gewonnen\n\n"
     "Herzlichen Glückwunsch!\n",
     ""),
    ("forward-only-quoted-spam",
     "> Dear friend,\n>\n> I am a prince and need your help to move 10,000,000 USD.\n> Reply with your bank details.\n",
     ""),
    ("forward-only-apple-zh",
     "以下是转发的邮件：\n\n发件人: 中奖通知 <win@lottery.example>\n主题: 恭喜中奖\n"
     "日期: 2024年1月2日 GMT+8 10:00:00\n收件人: wangfang@example.cn\n\n恭喜您获得大奖！\n",
     ""),
]


# --- Quote and text interleaved ------------------------------------------------

INTERLEAVED: list[Case] = [
    ("interleaved-mutt",
     "On Tue, Jan 02, 2024 at 10:00:00AM +0100, Support wrote:\n"
     "> Which model do you have?\n\n"
     "The X200.\n\n"
     "> And when did you buy it?\n\n"
     "In March.\n\n"
     "> Do you still have the receipt?\n\n"
     "Yes, attached.\n",
     "The X200.\n\nIn March.\n\nYes, attached."),
    ("interleaved-thunderbird-de",
     "Hallo,\n\n"
     "Am 02.01.24 um 10:00 schrieb Support:\n"
     "> Welches Modell haben Sie?\n\n"
     "Das X200.\n\n"
     "> Seit wann tritt der Fehler auf?\n\n"
     "Seit gestern.\n\n"
     "Grüße\nJan\n",
     "Hallo,\n\nDas X200.\n\nSeit gestern.\n\nGrüße\nJan"),
    ("interleaved-gmail-fr",
     "Bonjour, réponses ci-dessous.\n\n"
     "Le mar. 2 janv. 2024 à 10:00, Support <support@exemple.fr> a écrit :\n\n"
     "> Quel est votre numéro de commande ?\n\n"
     "4411\n\n"
     "> Souhaitez-vous un échange ou un remboursement ?\n\n"
     "Un remboursement.\n",
     "Bonjour, réponses ci-dessous.\n\n4411\n\nUn remboursement."),
    ("interleaved-no-attribution-es",
     "> ¿Cuál es su dirección?\n"
     "Calle Mayor 5, Madrid.\n"
     "> ¿Y su teléfono?\n"
     "600 000 000\n",
     "Calle Mayor 5, Madrid.\n\n600 000 000"),
    ("interleaved-with-signature-sv",
     "Den tis 2 jan. 2024 kl 10:00 skrev Support <support@exempel.se>:\n\n"
     "> Vilket ordernummer gäller det?\n\n"
     "8812\n\n"
     "-- \nAnna Svensson\n070-000 00 00\n",
     "8812"),
    ("interleaved-nested-ru",
     "02.01.2024 10:00, Служба поддержки пишет:\n"
     "> 01.01.2024 09:00, Иван пишет:\n"
     ">> Не работает интернет.\n"
     "> Какой у вас роутер?\n\n"
     "TP-Link.\n",
     "TP-Link."),
]


# --- Signatures ------------------------------------------------------------------

SIGNATURES: list[Case] = [
    ("dash-dash-fr", "Merci.\n\n-- \nMarie Dupont\nSociété Exemple\n+33 1 00 00 00 00\n", "Merci."),
    ("html2text-dash-dash-de", "Danke.\n\n\\--  \nJan Müller\n", "Danke."),
    ("iphone-en", "Yes, that's fine.\n\nSent from my iPhone\n", "Yes, that's fine."),
    ("iphone-de", "Ja, passt.\n\nVon meinem iPhone gesendet\n", "Ja, passt."),
    ("iphone-fr", "Oui, parfait.\n\nEnvoyé de mon iPhone\n", "Oui, parfait."),
    ("iphone-es", "Sí, perfecto.\n\nEnviado desde mi iPhone\n", "Sí, perfecto."),
    ("iphone-pt-br", "Sim, perfeito.\n\nEnviado do meu iPhone\n", "Sim, perfeito."),
    ("iphone-it", "Sì, perfetto.\n\nInviato da iPhone\n", "Sì, perfetto."),
    ("iphone-nl", "Ja, prima.\n\nVerstuurd vanaf mijn iPhone\n", "Ja, prima."),
    ("iphone-sv", "Ja, perfekt.\n\nSkickat från min iPhone\n", "Ja, perfekt."),
    ("iphone-da", "Ja, fint.\n\nSendt fra min iPhone\n", "Ja, fint."),
    ("iphone-fi", "Kyllä, sopii.\n\nLähetetty iPhonesta\n", "Kyllä, sopii."),
    ("iphone-pl", "Tak, pasuje.\n\nWysłane z iPhone'a\n", "Tak, pasuje."),
    ("iphone-cs", "Ano, hodí se.\n\nOdesláno z iPhonu\n", "Ano, hodí se."),
    ("iphone-ru", "Да, подходит.\n\nОтправлено с iPhone\n", "Да, подходит."),
    ("iphone-uk", "Так, підходить.\n\nНадіслано з iPhone\n", "Так, підходить."),
    ("iphone-tr", "Evet, uygun.\n\niPhone'umdan gönderildi\n", "Evet, uygun."),
    ("iphone-zh", "好的，没问题。\n\n发自我的iPhone\n", "好的，没问题。"),
    ("iphone-zh-tw", "好的，沒問題。\n\n從我的 iPhone 傳送\n", "好的，沒問題。"),
    ("iphone-ja", "はい、大丈夫です。\n\niPhoneから送信\n", "はい、大丈夫です。"),
    ("iphone-ko", "네, 좋습니다.\n\niPhone에서 보냄\n", "네, 좋습니다."),
    ("huawei-zh", "明天下午到。\n\n发自我的华为手机\n", "明天下午到。"),
    ("netease-master-sig-zh", "已收到。\n\n来自网易邮箱大师\n", "已收到。"),
    ("qq-mobile-sig-zh", "已收到。\n\n发自QQ邮箱\n", "已收到。"),
    ("samsung-sig-de", "Bis morgen.\n\n\nVon meinem Samsung Galaxy Smartphone gesendet.\n", "Bis morgen."),
    ("samsung-sig-es", "Hasta mañana.\n\n\nEnviado desde mi smartphone Samsung Galaxy.\n", "Hasta mañana."),
    ("yandex-mobile-ru", "Хорошо.\n\n--\nОтправлено из мобильной Яндекс Почты\n", "Хорошо."),
    ("outlook-android-en", "On my way.\n\nSent from Outlook for Android\n", "On my way."),
    ("outlook-ios-en", "Done.\n\nGet Outlook for iOS<https://aka.ms/o0ukef>\n", "Done."),
    ("outlook-ios-de", "Erledigt.\n\nOutlook für iOS<https://aka.ms/o0ukef> herunterladen\n", "Erledigt."),
    ("outlook-android-fr", "C'est fait.\n\nObtenir Outlook pour Android<https://aka.ms/ghei36>\n", "C'est fait."),
    ("outlook-ios-ja", "完了しました。\n\niOS 版 Outlook<https://aka.ms/o0ukef> を入手\n", "完了しました。"),
    ("html2text-outlook-ios", "Done.\n\nGet [Outlook for iOS](https://aka.ms/o0ukef)\n", "Done."),
    ("iphone-then-quote-pt-br",
     "Pode ser amanhã.\n\nEnviado do meu iPhone\n\n"
     "Em 2 de jan. de 2024, à(s) 10:00, Suporte <suporte@exemplo.com.br> escreveu:\n\n"
     "> Qual é o melhor horário?\n",
     "Pode ser amanhã."),
    ("signature-only", "-- \nJane Doe\nACME Support\n+1 555 0100\n", ""),
    ("signature-only-iphone-de", "\nVon meinem iPhone gesendet\n", ""),
    ("signature-and-quote-only",
     "Sent from my iPhone\n\nOn Jan 2, 2024, at 10:00, Support <support@example.com> wrote:\n\n> Any news?\n",
     ""),
]


# --- Prose that must be left alone ----------------------------------------------------

PROSE: list[Case] = [
    ("prose-booking-en",
     "From: Berlin\nTo: Munich\nDate: 12 March\n\nCan I change my booking to the evening train?",
     "From: Berlin\nTo: Munich\nDate: 12 March\n\nCan I change my booking to the evening train?"),
    ("prose-from-the-manual",
     "From: the manual, page 4.\nIt says to hold the button.",
     "From: the manual, page 4.\nIt says to hold the button."),
    ("prose-subject-line-ja",
     "件名：請求書の再発行\n\nお世話になっております。再発行をお願いします。",
     "件名：請求書の再発行\n\nお世話になっております。再発行をお願いします。"),
    ("prose-wrote-en",
     "As Anna wrote: the device is broken.\nPlease send a new one.",
     "As Anna wrote: the device is broken.\nPlease send a new one."),
    ("prose-dashed-heading",
     "--- Update ---\nThe parcel arrived today.",
     "--- Update ---\nThe parcel arrived today."),
    ("prose-sent-from-tr",
     "Kargo depodan gönderildi ama hâlâ gelmedi.",
     "Kargo depodan gönderildi ama hâlâ gelmedi."),
    ("prose-sent-from-en",
     "Sent from the warehouse on Monday, but still not here.",
     "Sent from the warehouse on Monday, but still not here."),
    ("prose-von-de",
     "Von: Montag bis Freitag sind wir erreichbar.\nAn: Wochenenden nicht.",
     "Von: Montag bis Freitag sind wir erreichbar.\nAn: Wochenenden nicht."),
    ("prose-sent-by-mail-de",
     "Ich habe die Rechnung per Mail gesendet\nBitte prüfen",
     "Ich habe die Rechnung per Mail gesendet\nBitte prüfen"),
    ("prose-sent-from-address-de",
     "Gesendet von meiner privaten Mail-Adresse, bitte antworten Sie hierhin\nDanke",
     "Gesendet von meiner privaten Mail-Adresse, bitte antworten Sie hierhin\nDanke"),
    ("prose-sent-by-mail-tr",
     "Fatura mail ile gönderildi\nAma ulaşmadı",
     "Fatura mail ile gönderildi\nAma ulaşmadı"),
    ("prose-from-phone-zh",
     "来自上海的客户投诉手机坏了\n请尽快处理",
     "来自上海的客户投诉手机坏了\n请尽快处理"),
    ("prose-outlook-ios-en",
     "Outlook for iOS crashes\nwhen I open the attachment.",
     "Outlook for iOS crashes\nwhen I open the attachment."),
    ("prose-da-a-it",
     "Siamo aperti\nDa: lunedì\nA: venerdì\nGrazie",
     "Siamo aperti\nDa: lunedì\nA: venerdì\nGrazie"),
    ("prose-sent-on-date-en",
     "I sent the package on 12.03.2024 with these items:\n- charger\n- cable",
     "I sent the package on 12.03.2024 with these items:\n- charger\n- cable"),
]


# --- A second batch, written after the rules above as a check on them -------------
# (the first run matched 73 of 74; the miss, Apple Mail's Polish "Wiadomość
# napisana przez ...", was then added to the verbs).

MORE: list[Case] = [
    ("outlook-en-wrapped-from",
     "Approved.\n\nFrom: Very Long Department Name Of The Example Corporation\n<dept@example.com>\n"
     "Sent: Tuesday, January 2, 2024 10:00 AM\nTo: Jane <jane@example.org>; Bob <bob@example.org>;\n"
     "Carol <carol@example.org>\nCc: Team <team@example.org>\nSubject: Budget\n\nPlease approve.\n",
     "Approved."),
    ("outlook-en-importance",
     "Yes.\n\nFrom: Boss <boss@example.com>\nSent: Tuesday, January 2, 2024 10:00 AM\n"
     "To: Me <me@example.com>\nSubject: Quick question\nImportance: High\n\nCan you do it?\n",
     "Yes."),
    ("aliyun-zh",
     "已确认。\n\n------------------------------------------------------------------\n"
     "发件人：客服中心 <service@example.cn>\n发送时间：2024年1月2日(星期二) 10:00\n收件人：王芳 <wangfang@example.cn>\n"
     "主\u3000题：维修完成\n\n您好\n",
     "已确认。"),
    ("naver-ko",
     "네 알겠습니다.\n\n-----Original Message-----\nFrom: \"고객센터\"<support@example.kr>\n"
     "To: \"김민수\"<minsu@example.kr>;\nCc:\nSent: 2024-01-02 (화) 10:00:00 (GMT+09:00)\nSubject: 환불 안내\n\n"
     "안녕하세요.\n",
     "네 알겠습니다."),
    ("daum-ko",
     "확인했습니다.\n\n----- 원본 메일 -----\n보낸사람 : 고객센터 <support@example.kr>\n받는사람 : 김민수 <minsu@example.kr>\n"
     "날짜 : 2024년 1월 2일(화) 10:00:00\n제목 : 환불 안내\n\n안녕하세요.\n",
     "확인했습니다."),
    ("mailru-forward-ru",
     "Посмотрите, пожалуйста.\n\n-------- Пересылаемое сообщение --------\n"
     "От кого: Банк <noreply@bank.example>\nКому: ivan@example.ru\n"
     "Дата: Вторник, 2 января 2024, 10:00 +03:00\nТема: Платёж\n\nВаш платёж отклонён.\n",
     "Посмотрите, пожалуйста."),
    ("yandex-forward-ru",
     "Пересылаю.\n\n-------- Пересылаемое сообщение --------\n"
     "02.01.2024, 10:00, \"Банк\" <noreply@bank.example>:\n\nВаш платёж отклонён.\n\n"
     "-------- Конец пересылаемого сообщения --------\n",
     "Пересылаю."),
    ("gmail-forward-hu",
     "Továbbítom.\n\n---------- Továbbított levél ---------\nFeladó: Bank <noreply@bank.example>\n"
     "Date: 2024. jan. 2., K, 10:00\nSubject: Fizetés\nTo: <anna@example.hu>\n\nSikertelen fizetés.\n",
     "Továbbítom."),
    ("gmail-forward-ja",
     "ご確認ください。\n\n---------- Forwarded message ---------\nFrom: 請求担当 <billing@example.jp>\n"
     "Date: 2024年1月2日(火) 10:00\nSubject: お支払い\nTo: <yamada@example.jp>\n\nお支払いが確認できませんでした。\n",
     "ご確認ください。"),
    ("gmail-forward-zh",
     "请看下面。\n\n---------- 转发的邮件 ---------\n发件人： 银行 <noreply@bank.example>\nDate: 2024年1月2日周二 10:00\n"
     "Subject: 付款\nTo: <wangfang@example.cn>\n\n付款失败。\n",
     "请看下面。"),
    ("gmail-forward-tr",
     "Bilginize.\n\n---------- Yönlendirilmiş ileti ---------\nGönderen: Banka <noreply@bank.example>\n"
     "Date: 2 Oca 2024 Sal, 10:00\nSubject: Ödeme\nTo: <ayse@example.com.tr>\n\n"
     "Ödemeniz başarısız oldu.\n",
     "Bilginize."),
    ("gmail-3line-wrap-en",
     "Sounds good.\n\nOn Tue, Jan 2, 2024 at 10:00 AM The Very Long Name Of A Customer Support\n"
     "Team At Example Corporation International <\nsupport-team@example.com> wrote:\n\n> Hi\n",
     "Sounds good."),
    ("text-right-above-attribution",
     "Thanks, I'll call at 10:00.\nOn Tue, Jan 2, 2024 at 9:00 AM Support <support@example.com> wrote:\n"
     "> Call us.\n",
     "Thanks, I'll call at 10:00."),
    ("lotus-en",
     "OK.\n\nSupport <support@example.com> wrote on 02.01.2024 10:00:\n\n> Hello\n",
     "OK."),
    ("lotus-de",
     "OK.\n\nSupport <support@beispiel.de> schrieb am 02.01.2024 10:00:\n\n> Hallo\n",
     "OK."),
    ("yahoo-en-indented",
     "Thanks!\n\n\n\n"
     "    On Tuesday, January 2, 2024, 10:00:00 AM GMT+1, Support <support@example.com> wrote:  \n\n \n"
     " Hello,\n our reply.\n",
     "Thanks!"),
    ("yahoo-fr",
     "Merci !\n\n\n"
     "    Le mardi 2 janvier 2024 à 10:00:00 UTC+1, Support <support@exemple.fr> a écrit :  \n\n"
     " Bonjour,\n",
     "Merci !"),
    ("yahoo-es",
     "¡Gracias!\n\n\n"
     "    El martes, 2 de enero de 2024, 10:00:00 CET, Soporte <soporte@ejemplo.es> escribió:  \n\n"
     " Hola,\n",
     "¡Gracias!"),
    ("yahoo-it",
     "Grazie!\n\n\n"
     "    Il martedì 2 gennaio 2024, 10:00:00 CET, Assistenza <assistenza@esempio.it> ha scritto:  \n\n"
     " Salve,\n",
     "Grazie!"),
    ("interleaved-long-quote-answer",
     "On Tue, Jan 2, 2024 at 10:00 AM Support <support@example.com> wrote:\n"
     "> Please send us a photo of the label on the back of the device, thanks.\nAttached.\n"
     "> And the purchase date?\nLast May.\n",
     "Attached.\n\nLast May."),
    ("gmx-android-de",
     "Bin unterwegs.\n\n--\n"
     "Diese Nachricht wurde von meinem Android Mobiltelefon mit GMX Mail gesendet.\n",
     "Bin unterwegs."),
    ("gmx-android-de-nodelim",
     "Bin unterwegs.\n\nDiese Nachricht wurde von meinem Android Mobiltelefon mit GMX Mail gesendet.\n\n"
     "Am 02.01.2024 um 10:00 schrieb Support <support@beispiel.de>:\n> Hallo\n",
     "Bin unterwegs."),
    ("k9-en",
     "Will do.\n\nSent from my Android device with K-9 Mail. Please excuse my brevity.\n",
     "Will do."),
    ("att-samsung-en",
     "Will do.\n\n\nSent via the Samsung Galaxy S21 5G, an AT&T 5G smartphone\n",
     "Will do."),
    ("blackberry-en",
     "Will do.\nSent from my BlackBerry® wireless device\n",
     "Will do."),
    ("ipad-fr",
     "D'accord.\n\nEnvoyé de mon iPad\n\n"
     "> Le 2 janv. 2024 à 10:00, Support <support@exemple.fr> a écrit :\n>\n> Bonjour\n",
     "D'accord."),
    ("yahoo-android-de",
     "Ok.\n\nGesendet von Yahoo Mail auf Android\n",
     "Ok."),
    ("webde-app-de",
     "Ok.\n\nGesendet mit der WEB.DE Mail App\n",
     "Ok."),
    ("huawei-en",
     "Ok.\n\nSent from my Huawei phone\n",
     "Ok."),
    ("galaxy-ko",
     "네.\n\nSamsung Galaxy 스마트폰에서 보냈습니다.\n",
     "네."),
    ("galaxy-fr",
     "Oui.\n\n\nEnvoyé depuis mon smartphone Samsung Galaxy.\n",
     "Oui."),
    ("mailru-mobile-ru",
     "Да.\n\n\n--\nОтправлено из Mail.ru для Android\n",
     "Да."),
    ("windows-mail-fr",
     "Oui.\n\nEnvoyé à partir de Courrier pour Windows\n",
     "Oui."),
    ("windows-mail-zh",
     "好。\n\n从 Windows 版邮件发送\n",
     "好。"),
    ("ipad-zh",
     "好。\n\n发自我的 iPad\n",
     "好。"),
    ("outlook-android-es",
     "Listo.\n\nObtener Outlook para Android<https://aka.ms/AAb9ysg>\n",
     "Listo."),
    ("outlook-ios-ko",
     "완료.\n\niOS용 Outlook<https://aka.ms/o0ukef> 받기\n",
     "완료."),
    ("outlook-android-zh",
     "已完成。\n\n获取 Android 版 Outlook<https://aka.ms/AAb9ysg>\n",
     "已完成。"),
    ("outlook-ios-ru",
     "Готово.\n\nПолучить Outlook для iOS<https://aka.ms/o0ukef>\n",
     "Готово."),
    ("sig-then-outlook",
     "See attached.\n\n--\nJane Doe | ACME\n\n________________________________\n"
     "From: Bob <bob@example.com>\nSent: Tuesday, January 2, 2024 10:00 AM\n"
     "To: Jane <jane@example.org>\nSubject: File\n\nSend it.\n",
     "See attached."),
    ("bottom-post-apple",
     "On 2 Jan 2024, at 10:00, Support <support@example.com> wrote:\n\n> Is it fixed?\n\n"
     "Yes, all good now.\n\nJane\n",
     "Yes, all good now.\n\nJane"),
    ("quote-only-with-attribution-de",
     "Am 02.01.2024 um 10:00 schrieb Support <support@beispiel.de>:\n\n> Hallo\n> Test\n",
     ""),
    ("prose-list-sent",
     "Sent: 3 boxes\nReceived: 2 boxes\nFrom: our warehouse in Leeds\n\nWhere is the third?",
     "Sent: 3 boxes\nReceived: 2 boxes\nFrom: our warehouse in Leeds\n\nWhere is the third?"),
    ("prose-qa",
     "Q: Does it work offline?\nA: Yes, mostly.\nDa: Italian for from.\n",
     "Q: Does it work offline?\nA: Yes, mostly.\nDa: Italian for from."),
    ("prose-from-date-subject-memo",
     "I got this letter on paper:\n\nFrom: Tax Office\nSubject: Reminder\n\nWhat should I do?",
     "I got this letter on paper:\n\nFrom: Tax Office\nSubject: Reminder\n\nWhat should I do?"),
    ("html2text-thunderbird-de",
     "Danke.\n\nAm 02.01.24 um 10:00 schrieb Support:  \n\n> Hallo,  \n> bitte bestätigen.\n\n\\--  \n"
     "Jan\n",
     "Danke."),
    ("sparrow-style-dash-nbsp",
     "Hi,\n\nfine.\n\n--&nbsp;\nJan\n",
     "Hi,\n\nfine."),
    ("outlook-fr-nbsp-colon",
     "D'accord.\n\nDe\xa0: Support <support@exemple.fr>\nEnvoyé\xa0: mardi 2 janvier 2024 10:00\n"
     "À\xa0: Marie <marie@example.fr>\nObjet\xa0: RDV\n\nBonjour\n",
     "D'accord."),
    ("gmail-ru-wrapped",
     "Спасибо!\n\nвт, 2 янв. 2024 г. в 10:00, Служба поддержки интернет-магазина Пример <\n"
     "support@primer.ru>:\n\n> Добрый день\n",
     "Спасибо!"),
    ("gmail-ja-wrapped",
     "了解です。\n\n2024年1月2日(火) 10:00 株式会社サンプル カスタマーサポートセンター <\nsupport@example.jp>:\n\n> お世話になっております。\n",
     "了解です。"),
    ("gmail-ko-wrapped",
     "감사합니다.\n\n2024년 1월 2일 (화) 오전 10:00, 주식회사 예시 고객지원센터 <support@example.kr>님이\n작성:\n\n> 안녕하세요.\n",
     "감사합니다."),
    ("gmail-pl-wrapped",
     "Dzięki.\n\nwt., 2 sty 2024 o 10:00 Dział Obsługi Klienta Przykład Sp. z o.o. <\n"
     "bok@przyklad.pl> napisał(a):\n\n> Dzień dobry\n",
     "Dzięki."),
    ("gmail-nl-wrapped",
     "Dank je.\n\nOp di 2 jan 2024 om 10:00 schreef Klantenservice Voorbeeld Nederland B.V. <\n"
     "service@voorbeeld.nl>:\n\n> Beste\n",
     "Dank je."),
    ("gmail-it-wrapped",
     "Grazie.\n\nIl giorno mar 2 gen 2024 alle ore 10:00 Servizio Clienti Esempio S.p.A. <\n"
     "assistenza@esempio.it> ha scritto:\n\n> Salve\n",
     "Grazie."),
    ("apple-mail-de-unquoted",
     "Danke.\n\nAm 02.01.2024 um 10:00 schrieb Support <support@beispiel.de>:\n\n"
     "Hallo, bitte bestätigen.\n",
     "Danke."),
    ("apple-mail-cs",
     "Díky.\n\n> Dne 2. 1. 2024 v 10:00, Podpora <podpora@priklad.cz> napsal(a):\n>\n> Dobrý den\n",
     "Díky."),
    ("apple-mail-ru",
     "Спасибо.\n\n> 2 янв. 2024 г., в 10:00, Поддержка <support@primer.ru> написал(а):\n>\n"
     "> Добрый день\n",
     "Спасибо."),
    ("apple-mail-pl-unquoted",
     "Dzięki.\n\nWiadomość napisana przez Obsługa <bok@przyklad.pl> w dniu 2 sty 2024, o godz. 10:00:\n"
     "\nDzień dobry\n",
     "Dzięki."),
    ("apple-mail-tr",
     "Teşekkürler.\n\n2 Oca 2024 tarihinde 10:00 saatinde, Destek <destek@ornek.com.tr> şunları yazdı:\n"
     "\nMerhaba\n",
     "Teşekkürler."),
    ("apple-mail-uk",
     "Дякую.\n\n2 січ. 2024 р. о 10:00 Підтримка <support@pryklad.ua> написав(-ла):\n\nДоброго дня\n",
     "Дякую."),
    ("apple-mail-fi",
     "Kiitos.\n\nAsiakaspalvelu <asiakaspalvelu@esimerkki.fi> kirjoitti 2.1.2024 kello 10.00:\n\nHei\n",
     "Kiitos."),
    ("apple-mail-da",
     "Tak.\n\nDen 2. jan. 2024 kl. 10.00 skrev Kundeservice <service@eksempel.dk>:\n\nHej\n",
     "Tak."),
    ("thunderbird-ko",
     "감사합니다.\n\n2024-01-02 오전 10:00에 고객센터 이(가) 쓴 글:\n> 안녕하세요.\n",
     "감사합니다."),
    ("thunderbird-tr",
     "Teşekkürler.\n\n02.01.2024 10:00 tarihinde Destek yazdı:\n> Merhaba\n",
     "Teşekkürler."),
    ("thunderbird-uk",
     "Дякую.\n\n02.01.24 10:00, Підтримка пише:\n> Доброго дня\n",
     "Дякую."),
    ("thunderbird-zh",
     "谢谢。\n\n在 2024/1/2 10:00, 客服中心 写道:\n> 您好\n",
     "谢谢。"),
    ("netease-163-zh",
     "谢谢。\n\n\n\n\n\n在 2024-01-02 10:00:00，\"客服中心\" <service@example.cn> 写道：\n\n您好\n",
     "谢谢。"),
    ("sina-zh",
     "好的\n\n----- 原始邮件 -----\n发件人：客服 <service@example.cn>\n收件人：王芳 <wangfang@example.cn>\n主题：预约\n"
     "日期：2024年01月02日 10点00分\n\n您好\n",
     "好的"),
    ("qq-web-nbsp-zh",
     "收到\n\n\n------------------&nbsp;原始邮件&nbsp;------------------\n"
     "发件人:&nbsp;\"客服\"<service@example.cn>;\n发送时间:&nbsp;2024年1月2日(星期二) 上午10:00\n"
     "收件人:&nbsp;\"王芳\"<wangfang@example.cn>;\n抄送:&nbsp;\n主题:&nbsp;预约\n\n您好\n",
     "收到"),
    ("thunderbird-forward-ja",
     "ご確認ください。\n\n-------- 転送メッセージ --------\n件名: \t請求書\n日付: \tTue, 2 Jan 2024 10:00:00 +0900\n"
     "差出人: \t請求担当 <billing@example.jp>\n宛先: \tyamada@example.jp\n\n請求書です。\n",
     "ご確認ください。"),
    ("outlook-forward-only-ru",
     "\n\n________________________________\nОт: Выигрыш <win@lottery.example>\n"
     "Отправлено: 2 января 2024 г. 10:00\nКому: ivan@example.ru\nТема: Вы выиграли\n\nПоздравляем!\n",
     ""),
    ("begin-forwarded-only-en",
     "\nBegin forwarded message:\n\nFrom: Prize <win@lottery.example>\nSubject: You won\n"
     "Date: 2 January 2024 at 10:00:00 CET\nTo: jane@example.org\n\nClaim now!\n",
     ""),
    ("signature-only-dash-zh",
     "--\n王芳\n示例科技有限公司\n",
     ""),
    ("whitespace-only", "  \n\n  \n", ""),
]


CASES: list[Case] = [
    *HEADER_BLOCKS, *ATTRIBUTIONS, *SEPARATORS, *FORWARDS, *INTERLEAVED, *SIGNATURES, *PROSE, *MORE,
]

# The language of each case is its id's "-xx" part ("outlook-de",
# "gmail-fr-wrapped"); these English ones have none.
ENGLISH = ("interleaved-mutt", "windows-mail", "forward-only-spam", "forward-only-quoted-spam", "signature-only",
           "signature-and-quote-only", "prose-booking-en")
LANGUAGE_CODES = ("en", "de", "fr", "es", "nl", "it", "pt", "sv", "da", "no", "fi", "pl", "cs", "ru", "uk", "tr",
                  "zh", "ja", "ko")


def languages(case_id: str) -> set[str]:
    found = {code for code in LANGUAGE_CODES if re.search(rf"-{code}(?:-|$)", case_id)}
    return found | ({"en"} if case_id in ENGLISH else set())


def table_score(strip: Callable[[str], str] = reply_text) -> tuple[int, int, list[str]]:
    """(exact matches, cases, failed ids) over the table and the HTML cases
    below, through both converters; bench/quotes.py prints it."""
    cases = list(CASES)
    for converter in (_html2text_defaults, html_to_text):
        want = converter(f"<div>{NEW_HTML}</div>").strip()
        cases += [(f"{name}/{converter.__name__}", converter(html), want) for name, html in HTML_CASES]
    failed = [name for name, body, want in cases if strip(body) != want]
    return len(cases) - len(failed), len(cases), failed


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_reply_text(body: str, expected: str) -> None:
    assert reply_text(body) == expected


def test_crlf_gives_the_same_reply() -> None:
    for name, body, want in CASES:
        assert reply_text(body.replace("\n", "\r\n")) == want, name


def test_table_spread() -> None:
    ids = [c[0] for c in CASES]
    assert len(set(ids)) == len(ids), "case ids must be unique"
    covered = set().union(*(languages(i) for i in ids))
    assert len(CASES) >= 80 and len(covered) >= 13, (len(CASES), sorted(covered))


# --- HTML mail, read through html2text -------------------------------------------------
# The quote arrives as html2text writes it: bold header names ("**Von:**"),
# "* * *" for Outlook's rule, markdown mailto links, "> " for blockquotes,
# and (with its defaults) lines wrapped at 78 characters.

NEW_HTML = "Thanks, this is my answer, long enough that html2text wraps it at seventy-eight characters."
OUTLOOK_HTML = (
    '<div dir="ltr">{new}</div><hr style="display:inline-block;width:98%" tabindex="-1">'
    '<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif"><b>{0}:</b> Support &lt;support@example.com&gt;'
    "<br><b>{1}:</b> {4}<br><b>{2}:</b> Kunde &lt;kunde@example.org&gt;<br><b>{3}:</b> RE: Ticket 42</font>"
    "<div>&nbsp;</div></div><div>Old text here.</div>"
)
GMAIL_HTML = (
    '<div dir="ltr">{new}</div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">{attr}<br></div>'
    '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex"><div dir="ltr">Old text here.</div>'
    "</blockquote></div>"
)
OUTLOOK_HEADERS = {
    "en": ("From", "Sent", "To", "Subject", "Tuesday, January 2, 2024 10:00 AM"),
    "de": ("Von", "Gesendet", "An", "Betreff", "Dienstag, 2. Januar 2024 10:00"),
    "fr": ("De", "Envoyé", "À", "Objet", "mardi 2 janvier 2024 10:00"),
    "es": ("De", "Enviado el", "Para", "Asunto", "martes, 2 de enero de 2024 10:00"),
    "nl": ("Van", "Verzonden", "Aan", "Onderwerp", "dinsdag 2 januari 2024 10:00"),
    "it": ("Da", "Inviato", "A", "Oggetto", "martedì 2 gennaio 2024 10:00"),
    "sv": ("Från", "Skickat", "Till", "Ämne", "den 2 januari 2024 10:00"),
    "fi": ("Lähettäjä", "Lähetetty", "Vastaanottaja", "Aihe", "tiistai 2. tammikuuta 2024 10.00"),
    "pl": ("Od", "Wysłano", "Do", "Temat", "wtorek, 2 stycznia 2024 10:00"),
    "ru": ("От", "Отправлено", "Кому", "Тема", "2 января 2024 г. 10:00"),
    "tr": ("Kimden", "Gönderildi", "Kime", "Konu", "2 Ocak 2024 Salı 10:00"),
    "zh": ("发件人", "发送时间", "收件人", "主题", "2024年1月2日 10:00"),
    "ja": ("差出人", "送信日時", "宛先", "件名", "2024年1月2日 10:00"),
    "ko": ("보낸 사람", "보낸 날짜", "받는 사람", "제목", "2024년 1월 2일 화요일 오전 10:00"),
}
_MAILTO = '&lt;<a href="mailto:support@example.com">support@example.com</a>&gt;'
GMAIL_ATTRIBUTIONS = {
    "en": f"On Tue, Jan 2, 2024 at 10:00 AM Support {_MAILTO} wrote:",
    "de": f"Am Di., 2. Jan. 2024 um 10:00 Uhr schrieb Support {_MAILTO}:",
    "fr": f"Le mar. 2 janv. 2024 à 10:00, Support {_MAILTO} a écrit&nbsp;:",
    "pt": f"Em ter., 2 de jan. de 2024 às 10:00, Suporte {_MAILTO} escreveu:",
    "ru": f"вт, 2 янв. 2024 г. в 10:00, Поддержка {_MAILTO}:",
    "tr": f"Destek {_MAILTO}, 2 Oca 2024 Sal, 10:00 tarihinde şunu yazdı:",
    "zh": f"客服中心 {_MAILTO} 于2024年1月2日周二 10:00写道：",
    "ja": f"2024年1月2日(火) 10:00 サポート {_MAILTO}:",
    "ko": f"2024년 1월 2일 (화) 오전 10:00, 고객센터 {_MAILTO}님이 작성:",
}
HTML_CASES = [(f"outlook-html-{lang}", OUTLOOK_HTML.format(*h, new=NEW_HTML)) for lang, h in OUTLOOK_HEADERS.items()]
HTML_CASES += [(f"gmail-html-{lang}", GMAIL_HTML.format(new=NEW_HTML, attr=a)) for lang, a in GMAIL_ATTRIBUTIONS.items()]


def _html2text_defaults(html: str) -> str:
    import html2text

    return html2text.html2text(html)


@pytest.mark.parametrize("converter", [_html2text_defaults, html_to_text], ids=["html2text-defaults", "inboxd"])
@pytest.mark.parametrize("html", [c[1] for c in HTML_CASES], ids=[c[0] for c in HTML_CASES])
def test_html_mail_through_html2text(html: str, converter) -> None:
    want = converter(f"<div>{NEW_HTML}</div>").strip()
    assert reply_text(converter(html)) == want
